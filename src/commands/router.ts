import type { MatrixClient } from "matrix-bot-sdk";
import type { AccessPolicy } from "../access/policy.ts";
import type { Logger } from "../log.ts";
import { threadMessage, type ComposeOptions } from "../matrix/content.ts";
import type { IncomingMessage } from "../matrix/inbound.ts";
import { userPowerLevel } from "../matrix/power.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { AgentBackend } from "./backend.ts";
import { helpText } from "./help.ts";
import { parseCommand, stripPrefix } from "./parse.ts";
import { UsageError, type CommandContext, type CommandServices, type CommandSpec } from "./types.ts";

export interface RouterDeps {
  botUserId: string;
  access: AccessPolicy;
  threads: ThreadStore;
  backends: AgentBackend[];
  sender: MatrixSender;
  client: MatrixClient;
  services: Omit<CommandServices, "prefix">;
  log: Logger;
  /** Fetches the files a message carries (m.image, m.file) so they reach the agent. */
  downloadFiles: (msg: IncomingMessage) => Promise<Array<{ mime: string; filename: string; data: Buffer }>>;
}

export const moderatorLevel = 50;

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
    if (msg.msgtype === "m.reaction") {
      // Reactions only matter on permission requests, and only from people who may decide.
      if (!msg.reactsTo || !this.d.access.isAllowed(msg.sender)) return;
      for (const backend of this.d.backends) {
        if (await backend.onReaction?.(msg.roomId, msg.reactsTo, msg.body, msg.sender)) return;
      }
      return;
    }
    // Notices are what bots send: answering them is how two bots loop forever.
    if (msg.msgtype === "m.notice") return;
    const isFile = msg.msgtype === "m.image" || msg.msgtype === "m.file";
    if (msg.msgtype !== "m.text" && msg.msgtype !== "m.emote" && !isFile) return;

    const thread = msg.threadRoot !== undefined ? this.d.threads.get(msg.roomId, msg.threadRoot) : undefined;
    const addressed = isFile ? undefined : this.addressedTo(msg.body);
    if (thread === undefined && addressed === undefined) return;

    if (!this.d.access.isAllowed(msg.sender)) {
      await this.refuseStranger(msg);
      return;
    }
    const root = msg.threadRoot ?? msg.eventId;
    const reply = (text: string, opts: ComposeOptions = {}): Promise<string> =>
      this.d.sender.send(msg.roomId, threadMessage({ roomId: msg.roomId, threadRoot: root, replyTo: msg.eventId }, text, { notice: true, ...opts }));

    if (addressed === undefined) {
      const owner = this.d.backends.find((b) => b.name === thread?.backend);
      if (owner && thread) await this.followUp(owner, thread, msg, msg.body, reply);
      return;
    }
    const { backend, rest } = addressed;
    const own = thread?.backend === backend.name ? thread : undefined;
    const command = parseCommand(rest, backend.commands.flatMap((c) => [c.name, ...(c.aliases ?? [])]));
    switch (command.kind) {
      case "help":
        await reply(helpText(backend));
        return;
      case "unknown":
        await reply(
          `Unknown command \`${command.word}\`.${command.suggestion ? ` Did you mean \`${backend.prefix} ${command.suggestion}\`?` : ""} ` +
            `See \`${backend.prefix} help\`; to send one word as a prompt, write \`${backend.prefix} prompt ${command.word}\`.`,
        );
        return;
      case "prompt":
        if (own) await this.followUp(backend, own, msg, command.text, reply);
        else if (thread) await reply(`This thread belongs to a ${thread.backend} session; start a ${backend.name} one at the top level of the room.`);
        else await this.startThread(backend, msg, command.text, root, reply);
        return;
      case "command": {
        const spec = backend.commands.find((c) => c.name === command.name || c.aliases?.includes(command.name)) as CommandSpec;
        await this.runCommand(spec, backend, {
          msg,
          args: command.args,
          thread: own,
          root,
          reply,
          services: { ...this.d.services, prefix: backend.prefix },
          senderIsAdmin: this.d.access.isAdmin(msg.sender),
        });
        return;
      }
    }
  }

  private addressedTo(body: string): { backend: AgentBackend; rest: string } | undefined {
    for (const backend of this.d.backends) {
      const rest = stripPrefix(body, backend.prefix);
      if (rest !== undefined) return { backend, rest };
    }
    return undefined;
  }

  private async runCommand(spec: CommandSpec, backend: AgentBackend, ctx: CommandContext): Promise<void> {
    const usage = `\`${backend.prefix} ${spec.name}${spec.args ? ` ${spec.args}` : ""}\``;
    if (spec.where === "thread" && !ctx.thread) {
      await ctx.reply(`${usage} works inside a session thread: write it as a reply in the thread of the session.`);
      return;
    }
    if (spec.where === "room" && ctx.thread) {
      await ctx.reply(`${usage} works at the top level of the room, not inside a thread.`);
      return;
    }
    if (spec.rights === "admin" && !ctx.senderIsAdmin) {
      const none = this.d.access.hasAdmins ? "" : ", and none are configured";
      await ctx.reply(`${usage} is for the bot's operators (access.admins)${none}.`);
      return;
    }
    if (spec.rights === "moderator" && (await userPowerLevel(this.d.client, ctx.msg.roomId, ctx.msg.sender)) < moderatorLevel) {
      await ctx.reply(`${usage} needs room moderator rights (power level ≥ ${moderatorLevel}).`);
      return;
    }
    try {
      await spec.run(ctx);
    } catch (err) {
      if (err instanceof UsageError) {
        await ctx.reply(`${err.message} Usage: ${usage} — ${spec.summary}.`);
        return;
      }
      this.d.log.error({ err, command: spec.name, roomId: ctx.msg.roomId }, "command failed");
      await ctx.reply(`⚠️ \`${spec.name}\` failed: ${(err as Error).message}`);
    }
  }

  private async startThread(backend: AgentBackend, msg: IncomingMessage, text: string, root: string, reply: (t: string) => Promise<string>): Promise<void> {
    try {
      await backend.startThread({ roomId: msg.roomId, eventId: msg.eventId, sender: msg.sender, text }, root);
    } catch (err) {
      this.d.log.error({ err, roomId: msg.roomId }, "could not start a session");
      await reply(`⚠️ Could not start a ${backend.name} session: ${(err as Error).message}. Try again in a moment.`);
    }
  }

  private async followUp(backend: AgentBackend, thread: ThreadRow, msg: IncomingMessage, text: string, reply: (t: string) => Promise<string>): Promise<void> {
    try {
      const files = msg.msgtype === "m.image" || msg.msgtype === "m.file" ? await this.d.downloadFiles(msg) : [];
      const body = files.length > 0 ? `sent ${files.map((f) => f.filename).join(", ")}` : text;
      const { queued } = await backend.followUp(thread, { roomId: msg.roomId, eventId: msg.eventId, sender: msg.sender, text: body, files });
      if (queued > 0) await this.d.sender.react(msg.roomId, msg.eventId, `🕐 ${queued}`);
    } catch (err) {
      this.d.log.error({ err, roomId: msg.roomId }, "could not prompt the session");
      await reply(`⚠️ Could not reach ${backend.name}: ${(err as Error).message}`);
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
