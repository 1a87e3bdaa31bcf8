import type { MatrixClient } from "matrix-bot-sdk";
import type { Logger } from "../log.ts";
import type { ComposeOptions } from "../matrix/content.ts";
import type { IncomingMessage } from "../matrix/inbound.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { RoomStore } from "../store/rooms.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";

/** What every backend's commands may use; what only one backend needs, its commands get from it. */
export interface CommandServices {
  prefix: string;
  threads: ThreadStore;
  rooms: RoomStore;
  sender: MatrixSender;
  client: MatrixClient;
  log: Logger;
}

export interface CommandContext {
  msg: IncomingMessage;
  /** The words after the command name. */
  args: string;
  /** The session thread the command was written in, if any. */
  thread: ThreadRow | undefined;
  /** Answers go into this thread: the one the message is in, or a new one on the message. */
  root: string;
  reply(markdown: string, opts?: ComposeOptions): Promise<string>;
  services: CommandServices;
  /** The sender is one of the bot's operators (access.admins), for operator-only variants of a command. */
  senderIsAdmin: boolean;
  /** The backend whose prefix the command was written with (shared commands act on its threads). */
  backend?: string | undefined;
}

export type Rights = "user" | "moderator" | "admin";

export interface CommandSpec {
  name: string;
  aliases?: string[];
  /** Arguments as shown in help and usage answers, e.g. "<provider/model>". */
  args?: string;
  summary: string;
  /** "thread": needs a session thread; "room": top level only; "any": both (meaning differs). */
  where: "thread" | "room" | "any";
  /**
   * Who may run it, beyond being an allowed user (default "user"): "moderator" needs power
   * level ≥ 50 in the room (room affairs); "admin" needs to be in access.admins (what every
   * room shares: the power levels of a room its creator controls say nothing about that).
   */
  rights?: Rights;
  run(ctx: CommandContext): Promise<void>;
}

/** Thrown by a command whose arguments are wrong; the router answers with the usage line. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** What the person typed, quoted back in an answer: one line, at most `max` characters. */
export function echo(typed: string, max = 100): string {
  const line = typed.replace(/\s+/g, " ").replace(/`/g, "'");
  return `\`${line.length > max ? `${line.slice(0, max)}…` : line}\``;
}
