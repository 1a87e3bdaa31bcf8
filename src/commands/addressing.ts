import type { MatrixClient } from "matrix-bot-sdk";
import type { Logger } from "../log.ts";
import type { IncomingMessage } from "../matrix/inbound.ts";
import { BotMentions } from "../matrix/mention.ts";
import { ReplyTargets } from "../matrix/reply-target.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { AgentBackend } from "./backend.ts";
import { stripPrefix } from "./parse.ts";

export interface Addressed {
  backend: AgentBackend;
  /** The words after the prefix (or after the mention). */
  rest: string;
}

/** Where a message goes, before anyone checks whether its sender may. */
export interface Route {
  /** The message as the router treats it: a plain reply into a session carries that session's thread root. */
  msg: IncomingMessage;
  /** The session thread it belongs to, if any. */
  thread: ThreadRow | undefined;
  /** Addressed to a backend: by its prefix, or by a mention of the bot (then the first backend's, unless a prefix follows). */
  addressed: Addressed | undefined;
  /** The text of a plain follow-up: the body without a mention of the bot. */
  text: string;
}

export interface AddressingDeps {
  botUserId: string;
  backends: AgentBackend[];
  threads: ThreadStore;
  client: Pick<MatrixClient, "getEvent" | "getRoomStateEvent">;
  log: Logger;
}

/**
 * Works out whom a message is for: a prefix (`!oc …`), a mention of the bot (`Bot: …`, a pill,
 * `@bot:example.org …`), a message in a session thread, or a plain reply (`m.in_reply_to`
 * without a thread, from clients that have no threads) to any event of a session thread.
 */
export class Addressing {
  private readonly d: AddressingDeps;
  private readonly mentions: BotMentions;
  private readonly replies: ReplyTargets;

  constructor(deps: AddressingDeps) {
    this.d = deps;
    this.mentions = new BotMentions(deps.client, deps.botUserId);
    this.replies = new ReplyTargets(deps.client, deps.log);
  }

  /** Undefined when the message is for nobody here (not addressed, not in a session). */
  async route(msg: IncomingMessage, isFile: boolean): Promise<Route | undefined> {
    let routed = msg;
    let thread = msg.threadRoot !== undefined ? this.d.threads.get(msg.roomId, msg.threadRoot) : undefined;
    if (msg.threadRoot === undefined && msg.inReplyTo !== undefined) {
      const row = await this.sessionOfReply(msg.roomId, msg.inReplyTo);
      if (row) {
        thread = row;
        routed = { ...msg, threadRoot: row.rootEventId };
      }
    }
    const viaReply = routed !== msg;
    if (isFile) return thread ? this.done(routed, thread, undefined, msg.body, viaReply) : undefined;

    let text = msg.body;
    let addressed = this.addressedTo(text);
    if (addressed === undefined) {
      const mentioned = await this.mentions.strip(msg);
      if (mentioned !== undefined) {
        text = mentioned;
        addressed = this.addressedTo(mentioned);
        // In a session thread a mention is just a follow-up; a bare mention asks for help.
        const owner = thread ? this.d.backends.find((b) => b.name === thread?.backend) : this.d.backends[0];
        if (addressed === undefined && owner && (thread === undefined || mentioned.length === 0)) addressed = { backend: owner, rest: mentioned };
      }
    }
    if (viaReply && addressed && addressed.backend.name !== thread?.backend) {
      // Another backend's prefix in a reply to this session: a session of its own at the top level, as before.
      routed = msg;
      thread = undefined;
    }
    if (thread === undefined && addressed === undefined) return undefined;
    return this.done(routed, thread, addressed, text, routed !== msg);
  }

  private done(msg: IncomingMessage, thread: ThreadRow | undefined, addressed: Addressed | undefined, text: string, viaReply: boolean): Route {
    // A reply to this reply belongs to the same session too.
    if (viaReply && thread) this.replies.remember(msg.roomId, msg.eventId, thread.rootEventId);
    return { msg, thread, addressed, text };
  }

  /** The session thread whose root or any other event `eventId` is. */
  private async sessionOfReply(roomId: string, eventId: string): Promise<ThreadRow | undefined> {
    const asRoot = this.d.threads.get(roomId, eventId);
    if (asRoot) return asRoot;
    const root = await this.replies.threadRootOf(roomId, eventId);
    return root !== undefined && root !== eventId ? this.d.threads.get(roomId, root) : undefined;
  }

  private addressedTo(body: string): Addressed | undefined {
    for (const backend of this.d.backends) {
      const rest = stripPrefix(body, backend.prefix);
      if (rest !== undefined) return { backend, rest };
    }
    return undefined;
  }
}
