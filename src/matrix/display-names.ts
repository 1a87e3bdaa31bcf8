import type { MatrixClient } from "matrix-bot-sdk";

/** Room display names, for attributing prompts and for readable pills; cached per room and user. */
export class DisplayNames {
  private readonly client: MatrixClient;
  private readonly cache = new Map<string, string>();

  constructor(client: MatrixClient) {
    this.client = client;
  }

  async get(roomId: string, userId: string): Promise<string> {
    const key = `${roomId}\u0000${userId}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const member = (await this.client.getRoomStateEvent(roomId, "m.room.member", userId).catch(() => undefined)) as
      | { displayname?: string }
      | undefined;
    const name = (member?.displayname ?? /^@([^:]+)/.exec(userId)?.[1] ?? userId).replace(/[[\]\n]/g, "").slice(0, 60);
    this.cache.set(key, name);
    return name;
  }
}
