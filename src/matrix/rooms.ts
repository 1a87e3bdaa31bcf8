import type { MatrixClient } from "matrix-bot-sdk";
import type { AccessPolicy } from "../access/policy.ts";
import type { Logger } from "../log.ts";
import type { Db } from "../store/db.ts";
import { roomMessage } from "./content.ts";
import type { MatrixSender } from "./sender.ts";

const encryptedNotice =
  "🔒 This room is end-to-end encrypted, and I cannot read encrypted messages yet. " +
  "Please talk to me in an unencrypted room.";

/** Joining, declining and the one-time notice for encrypted rooms. */
export class RoomMembership {
  private readonly client: MatrixClient;
  private readonly access: AccessPolicy;
  private readonly sender: MatrixSender;
  private readonly db: Db;
  private readonly log: Logger;

  constructor(opts: { client: MatrixClient; access: AccessPolicy; sender: MatrixSender; db: Db; log: Logger }) {
    this.client = opts.client;
    this.access = opts.access;
    this.sender = opts.sender;
    this.db = opts.db;
    this.log = opts.log;
  }

  async onInvite(roomId: string, event: { sender?: string }): Promise<void> {
    const inviter = event.sender ?? "";
    if (!this.access.isAllowed(inviter)) {
      this.log.info({ roomId, inviter }, "declining an invite from a user who is not allowed");
      await this.client.leaveRoom(roomId).catch((err: unknown) => this.log.warn({ err, roomId }, "could not decline invite"));
      return;
    }
    try {
      await this.client.joinRoom(roomId);
      this.log.info({ roomId, inviter }, "joined room");
    } catch (err) {
      this.log.warn({ err, roomId }, "could not join room");
    }
  }

  async onJoin(roomId: string): Promise<void> {
    this.db.prepare("INSERT OR IGNORE INTO rooms (room_id, joined_at) VALUES (?, ?)").run(roomId, Date.now());
    const encrypted = await this.client.getRoomStateEvent(roomId, "m.room.encryption", "").then(
      () => true,
      () => false,
    );
    if (encrypted) await this.tellEncrypted(roomId);
  }

  /** Says once per room that encrypted messages cannot be read, instead of staying silent. */
  async tellEncrypted(roomId: string): Promise<void> {
    const claimed = this.db
      .prepare("UPDATE rooms SET encrypted_notice_at = ? WHERE room_id = ? AND encrypted_notice_at IS NULL")
      .run(Date.now(), roomId).changes;
    if (claimed === 0) {
      const known = this.db.prepare("SELECT 1 FROM rooms WHERE room_id = ?").get(roomId);
      if (known) return;
      this.db.prepare("INSERT INTO rooms (room_id, joined_at, encrypted_notice_at) VALUES (?, ?, ?)").run(roomId, Date.now(), Date.now());
    }
    await this.sender.send(roomId, roomMessage(encryptedNotice, { notice: true })).catch((err: unknown) =>
      this.log.warn({ err, roomId }, "could not post the encryption notice"),
    );
  }
}
