import type { MatrixClient } from "matrix-bot-sdk";

interface PowerLevels {
  users?: Record<string, number>;
  users_default?: number;
}

/**
 * A user's power level in a room. Room version 12 gives the creators unlimited power without
 * listing them in m.room.power_levels (the SDK's own helpers miss that), so they count as 100+.
 */
export async function userPowerLevel(client: MatrixClient, roomId: string, userId: string): Promise<number> {
  const create = (await client.getRoomStateEvent(roomId, "m.room.create", "").catch(() => undefined)) as
    | { room_version?: string; additional_creators?: string[] }
    | undefined;
  const levels = (await client.getRoomStateEvent(roomId, "m.room.power_levels", "").catch(() => ({}))) as PowerLevels;
  const explicit = levels.users?.[userId];
  if (explicit !== undefined) return explicit;
  if (create && Number(create.room_version) >= 12) {
    const creator = await roomCreator(client, roomId);
    if (creator === userId || create.additional_creators?.includes(userId)) return Number.MAX_SAFE_INTEGER;
  }
  return levels.users_default ?? 0;
}

async function roomCreator(client: MatrixClient, roomId: string): Promise<string | undefined> {
  // The create event's sender is its creator; the state content alone does not say.
  const state = (await client.getRoomState(roomId).catch(() => [])) as Array<{ type: string; sender: string; state_key?: string }>;
  return state.find((e) => e.type === "m.room.create" && e.state_key === "")?.sender;
}
