import type { AccessPolicy } from "../access/policy.ts";
import type { Logger } from "../log.ts";
import { threadMessage } from "../matrix/content.ts";
import type { IncomingMessage } from "../matrix/inbound.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { describeError, type OpencodeBackend } from "../opencode/backend.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import { helpText } from "./help.ts";
import { parseCommand, stripPrefix } from "./parse.ts";

export interface RouterDeps {
  prefix: string;
  botUserId: string;
  access: AccessPolicy;
  threads: ThreadStore;
  opencode: OpencodeBackend;
  sender: MatrixSender;
  log: Logger;
}

/**
 * Decides what a room message means and hands it on: a command, a prompt for a new session, a
 * follow-up in a session thread, or nothing. Strangers never get past here.
 */
export class CommandRouter {
  private readonly d: RouterDeps;

  constructor(deps: RouterDeps) {
    this.d = deps;
  }

  async handle(msg: IncomingMessage): Promise<void> {
    if (msg.sender === this.d.botUserId || msg.isEdit) return;
    // Notices are what bots send: answering them is how two bots loop forever.
    if (msg.msgtype === "m.notice") return;
    if (msg.msgtype !== "m.text" && msg.msgtype !== "m.emote") return;

    const thread = msg.threadRoot !== undefined ? this.d.threads.get(msg.roomId, msg.threadRoot) : undefined;
    const rest = stripPrefix(msg.body, this.d.prefix);
    if (thread === undefined && rest === undefined) return;

    if (!this.d.access.isAllowed(msg.sender)) {
      await this.refuseStranger(msg);
      return;
    }
    const root = msg.threadRoot ?? msg.eventId;
    const reply = (text: string): Promise<string> =>
      this.d.sender.send(msg.roomId, threadMessage({ roomId: msg.roomId, threadRoot: root, replyTo: msg.eventId }, text, { notice: true }));

    if (rest === undefined) {
      await this.followUp(thread as ThreadRow, msg, msg.body);
      return;
    }
    const command = parseCommand(rest);
    switch (command.kind) {
      case "help":
        await reply(helpText(this.d.prefix));
        return;
      case "unknown":
        await reply(
          `Unknown command \`${command.word}\`.${command.suggestion ? ` Did you mean \`${this.d.prefix} ${command.suggestion}\`?` : ""} ` +
            `See \`${this.d.prefix} help\`; to send one word as a prompt, write \`${this.d.prefix} prompt ${command.word}\`.`,
        );
        return;
      case "prompt":
        if (thread) await this.followUp(thread, msg, command.text);
        else await this.newSession(msg, command.text, root, reply);
        return;
    }
  }

  private async newSession(msg: IncomingMessage, text: string, root: string, reply: (t: string) => Promise<string>): Promise<void> {
    try {
      await this.d.opencode.startSession({ roomId: msg.roomId, eventId: msg.eventId, sender: msg.sender, text }, root);
    } catch (err) {
      this.d.log.error({ err, roomId: msg.roomId }, "could not start a session");
      await reply(`⚠️ Could not start an OpenCode session: ${describeError(err)}. Try again in a moment.`);
    }
  }

  private async followUp(thread: ThreadRow, msg: IncomingMessage, text: string): Promise<void> {
    const req = { roomId: msg.roomId, eventId: msg.eventId, sender: msg.sender, text };
    try {
      const { queued } = await this.d.opencode.prompt(thread, req);
      if (queued > 0) await this.d.sender.react(msg.roomId, msg.eventId, `🕐 ${queued}`);
    } catch (err) {
      this.d.log.error({ err, roomId: msg.roomId }, "could not prompt the session");
      await this.d.sender.send(
        msg.roomId,
        threadMessage({ roomId: msg.roomId, threadRoot: thread.rootEventId, replyTo: msg.eventId }, `⚠️ Could not reach OpenCode: ${describeError(err)}`, {
          notice: true,
        }),
      );
    }
  }

  private async refuseStranger(msg: IncomingMessage): Promise<void> {
    this.d.log.info({ roomId: msg.roomId, sender: msg.sender }, "ignored a message from a user who is not allowed");
    if (!this.d.access.shouldTellStranger(msg.roomId, msg.sender)) return;
    const root = msg.threadRoot ?? msg.eventId;
    await this.d.sender.send(
      msg.roomId,
      threadMessage({ roomId: msg.roomId, threadRoot: root, replyTo: msg.eventId }, `Sorry, ${msg.sender} is not allowed to use this bot.`, {
        notice: true,
      }),
    );
  }
}
