import type { MatrixClient } from "matrix-bot-sdk";
import type { AccessPolicy } from "../access/policy.ts";
import type { Logger } from "../log.ts";
import { threadMessage, type ComposeOptions } from "../matrix/content.ts";
import type { IncomingMessage } from "../matrix/inbound.ts";
import { userPowerLevel } from "../matrix/power.ts";
import { inLane } from "../matrix/request-lanes.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { TypingKeeper } from "../matrix/typing.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { Transcriber } from "../voice/transcriber.ts";
import { Addressing } from "./addressing.ts";
import type { AgentBackend } from "./backend.ts";
import { helpText } from "./help.ts";
import { parseCommand } from "./parse.ts";
import { UsageError, type CommandContext, type CommandServices, type CommandSpec } from "./types.ts";
import { VoicePrompts } from "./voice-prompt.ts";

export interface RouterDeps {
  botUserId: string;
  access: AccessPolicy;
  threads: ThreadStore;
  backends: AgentBackend[];
  sender: MatrixSender;
  client: MatrixClient;
  services: Omit<CommandServices, "prefix">;
  /** Commands every backend answers to under its prefix (verbosity…). */
  shared?: CommandSpec[] | undefined;
  log: Logger;
  /** "The bot is typing…" while a prompt is being handed to its backend (optional). */
  typing?: Pick<TypingKeeper, "hold"> | undefined;
  /** Fetches the files a message carries (m.image, m.file) so they reach the agent. */
  downloadFiles: (msg: IncomingMessage) => Promise<Array<{ mime: string; filename: string; data: Buffer }>>;
  /** Voice messages (m.audio) become prompts through it; unset: they are answered with how to enable it. */
  transcriber?: Transcriber | undefined;
  /** The sender's room display name, to attribute a voice message's transcript. */
  displayName?: (roomId: string, userId: string) => Promise<string>;
}

export const moderatorLevel = 50;

/**
 * Decides what a room message means and hands it on: a command, a prompt for a new session, a
 * follow-up in a session thread, or nothing. Strangers never get past here.
 */
export class CommandRouter {
  private readonly d: RouterDeps;
  private readonly addressing: Addressing;
  private readonly voice: VoicePrompts;

  constructor(deps: RouterDeps) {
    this.d = deps;
    this.addressing = new Addressing(deps);
    this.voice = new VoicePrompts(deps, this.addressing);
  }

  async handle(incoming: IncomingMessage): Promise<void> {
    if (incoming.sender === this.d.botUserId || incoming.isEdit) return;
    if (incoming.msgtype === "m.reaction") {
      // Reactions only matter on permission requests, and only from people who may decide.
      if (!incoming.reactsTo || !this.d.access.isAllowed(incoming.sender)) return;
      for (const backend of this.d.backends) {
        if (await backend.onReaction?.(incoming.roomId, incoming.reactsTo, incoming.body, incoming.sender)) return;
      }
      return;
    }
    // Notices are what bots send: answering them is how two bots loop forever.
    if (incoming.msgtype === "m.notice") return;
    const isFile = incoming.msgtype === "m.image" || incoming.msgtype === "m.file";
    const isVoice = incoming.msgtype === "m.audio";
    if (incoming.msgtype !== "m.text" && incoming.msgtype !== "m.emote" && !isFile && !isVoice) return;

    const route = isVoice ? await this.voice.route(incoming) : await this.addressing.route(incoming, isFile);
    if (route === undefined) return;
    // A plain reply into a session is treated as written in its thread.
    const { msg, thread, addressed, text } = route;

    if (!this.d.access.isAllowed(msg.sender)) {
      await this.refuseStranger(msg);
      return;
    }
    const root = msg.threadRoot ?? msg.eventId;
    const reply = (markdown: string, opts: ComposeOptions = {}): Promise<string> =>
      this.d.sender.send(msg.roomId, threadMessage({ roomId: msg.roomId, threadRoot: root, replyTo: msg.eventId }, markdown, { notice: true, ...opts }));

    if (isVoice) {
      // Transcribed, shown, then the same prompt a typed message would be (src/commands/voice-prompt.ts).
      const said = addressed && (await this.voice.transcript(msg, addressed.rest, reply));
      if (addressed && said !== undefined) await this.prompt(addressed.backend, thread, msg, said, root, reply);
      return;
    }
    if (addressed === undefined) {
      const owner = this.d.backends.find((b) => b.name === thread?.backend);
      if (owner && thread) await this.followUp(owner, thread, msg, text, reply);
      return;
    }
    const { backend, rest } = addressed;
    const commands = this.commandsOf(backend);
    const command = parseCommand(rest, commands.flatMap((c) => [c.name, ...(c.aliases ?? [])]));
    switch (command.kind) {
      case "help":
        await reply(helpText(backend, commands));
        return;
      case "unknown":
        await reply(
          `Unknown command \`${command.word}\`.${command.suggestion ? ` Did you mean \`${backend.prefix} ${command.suggestion}\`?` : ""} ` +
            `See \`${backend.prefix} help\`; to send one word as a prompt, write \`${backend.prefix} prompt ${command.word}\`.`,
        );
        return;
      case "prompt":
        await this.prompt(backend, thread, msg, command.text, root, reply);
        return;
      case "command": {
        const spec = commands.find((c) => c.name === command.name || c.aliases?.includes(command.name)) as CommandSpec;
        await this.runCommand(spec, backend, {
          msg,
          args: command.args,
          thread: thread?.backend === backend.name ? thread : undefined,
          root,
          reply,
          services: { ...this.d.services, prefix: backend.prefix },
          senderIsAdmin: this.d.access.isAdmin(msg.sender),
          backend: backend.name,
        });
        return;
      }
    }
  }

  /** The backend's own commands, then the shared ones it does not define itself. */
  private commandsOf(backend: AgentBackend): CommandSpec[] {
    const own = new Set(backend.commands.flatMap((c) => [c.name, ...(c.aliases ?? [])]));
    return [...backend.commands, ...(this.d.shared ?? []).filter((c) => !own.has(c.name))];
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

  /** A prompt for `backend`: a follow-up in its own session thread, else a new session (not in another backend's thread). */
  private async prompt(backend: AgentBackend, thread: ThreadRow | undefined, msg: IncomingMessage, text: string, root: string, reply: (t: string) => Promise<string>): Promise<void> {
    if (thread?.backend === backend.name) await this.followUp(backend, thread, msg, text, reply);
    else if (thread) await reply(`This thread belongs to a ${thread.backend} session; start a ${backend.name} one at the top level of the room.`);
    else await this.startThread(backend, msg, text, root, reply);
  }

  private async startThread(backend: AgentBackend, msg: IncomingMessage, text: string, root: string, reply: (t: string) => Promise<string>): Promise<void> {
    await this.accepted(msg, async () => {
      try {
        await backend.startThread({ roomId: msg.roomId, eventId: msg.eventId, sender: msg.sender, text }, root);
      } catch (err) {
        this.d.log.error({ err, roomId: msg.roomId }, "could not start a session");
        await reply(`⚠️ Could not start a ${backend.name} session: ${(err as Error).message}. Try again in a moment.`);
      }
    });
  }

  private async followUp(backend: AgentBackend, thread: ThreadRow, msg: IncomingMessage, text: string, reply: (t: string) => Promise<string>): Promise<void> {
    await this.accepted(msg, async () => {
      try {
        const files = msg.msgtype === "m.image" || msg.msgtype === "m.file" ? await this.d.downloadFiles(msg) : [];
        const body = files.length > 0 ? `sent ${files.map((f) => f.filename).join(", ")}` : text;
        const { queued } = await backend.followUp(thread, { roomId: msg.roomId, eventId: msg.eventId, sender: msg.sender, text: body, files });
        if (queued > 0) await this.d.sender.react(msg.roomId, msg.eventId, `🕐 ${queued}`);
      } catch (err) {
        this.d.log.error({ err, roomId: msg.roomId }, "could not prompt the session");
        await reply(`⚠️ Could not reach ${backend.name}: ${(err as Error).message}`);
      }
    });
  }

  /**
   * Signs of life for a prompt the bot took: a read receipt and a 👀 reaction at once (beside
   * the work, not before it), and "typing" until the backend has taken the prompt.
   */
  private async accepted(msg: IncomingMessage, work: () => Promise<void>): Promise<void> {
    const release = this.d.typing?.hold(msg.roomId);
    // The 👀 is the acknowledgement; the receipt is decoration that waits behind answers when the homeserver is busy.
    const receipt = inLane({ lane: "background", maxWaitMs: 10_000 }, async () => this.d.client.sendReadReceipt(msg.roomId, msg.eventId)).catch((err: unknown) =>
      this.d.log.debug({ err, roomId: msg.roomId, eventId: msg.eventId }, "could not send a read receipt"),
    );
    const seen = this.d.sender.react(msg.roomId, msg.eventId, "👀");
    try {
      await work();
    } finally {
      release?.();
      await Promise.all([receipt, seen]);
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
