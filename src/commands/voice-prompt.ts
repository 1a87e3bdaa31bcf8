import type { MatrixClient } from "matrix-bot-sdk";
import type { Logger } from "../log.ts";
import type { ComposeOptions } from "../matrix/content.ts";
import { downloadMessageFiles } from "../matrix/files.ts";
import type { IncomingMessage } from "../matrix/inbound.ts";
import type { TypingKeeper } from "../matrix/typing.ts";
import type { Transcriber } from "../voice/transcriber.ts";
import type { Addressing, Route } from "./addressing.ts";
import type { AgentBackend } from "./backend.ts";

// Voice messages (`m.audio`, with or without `org.matrix.msc3245.voice`) as prompts: whom one is
// for, then its transcript, shown in the thread and handed back to the router as the prompt text.
//
// Whom a voice message is for (README: "Voice messages"):
//  - in a session thread, or a plain reply to any message of a session: that session, whatever
//    its backend (a caption's prefix does not move it elsewhere);
//  - at the top level with a caption (MSC2530: `body` beside a `filename`) that starts with a
//    prefix or mentions the bot: a new session of that backend, as the same text would;
//  - at the top level of a direct chat (the sender and the bot alone in the room): a new session
//    of the first backend (OpenCode), since a phone's voice recorder has no room for a prefix;
//  - anything else (a top-level voice message in a group room): nobody's, as plain text is.

export interface VoiceDeps {
  botUserId: string;
  backends: AgentBackend[];
  client: MatrixClient;
  log: Logger;
  typing?: Pick<TypingKeeper, "hold"> | undefined;
  /** Unset: `transcription.baseUrl` is not configured, and voice messages get the how-to. */
  transcriber?: Transcriber | undefined;
  /** The sender's name as the room shows it, for the transcript's attribution. */
  displayName?: ((roomId: string, userId: string) => Promise<string>) | undefined;
}

type Reply = (markdown: string, opts?: ComposeOptions) => Promise<string>;

export const howToEnable =
  "🎙️ Voice messages need a transcription service: set `transcription.baseUrl` (env `TRANSCRIPTION_BASE_URL`) to an OpenAI-compatible endpoint " +
  "such as `https://api.openai.com/v1`, with `transcription.apiKey` (`TRANSCRIPTION_API_KEY`), and restart the bot.";

/** The caption of a file message (MSC2530): its `body` when a `filename` beside it differs; else none. */
export function captionOf(msg: IncomingMessage): string {
  const filename = msg.content.filename;
  return typeof filename === "string" && filename !== msg.content.body ? msg.body : "";
}

/** Text shown inside a one-line notice as it was said: no markup takes effect, no line breaks. */
export function inline(text: string): string {
  return text.replace(/\s+/g, " ").trim().replace(/[\\`*_[\]<>&~|#]/g, "\\$&");
}

const megabytes = (n: number): string => `${Math.round((n / 1024 / 1024) * 10) / 10} MB`;

export class VoicePrompts {
  private readonly d: VoiceDeps;
  private readonly addressing: Pick<Addressing, "route">;

  constructor(deps: VoiceDeps, addressing: Pick<Addressing, "route">) {
    this.d = deps;
    this.addressing = addressing;
  }

  /** Whom the voice message is for; `addressed.rest` is a caption's text for before the transcript. Undefined: nobody here. */
  async route(msg: IncomingMessage): Promise<Route | undefined> {
    // Only a caption can carry a prefix or a mention: "Voice message" or a file name is not one.
    const r = await this.addressing.route({ ...msg, body: captionOf(msg) }, false);
    const restored = (route: Route): Route => ({ ...route, msg: { ...route.msg, body: msg.body } });
    if (r?.thread) {
      const owner = this.d.backends.find((b) => b.name === r.thread?.backend);
      if (!owner) return undefined;
      return restored({ ...r, addressed: { backend: owner, rest: r.addressed?.rest ?? r.text } });
    }
    if (r?.addressed) return restored(r);
    const first = this.d.backends[0];
    if (msg.threadRoot !== undefined || first === undefined || !(await this.isDirect(msg))) return undefined;
    return { msg, thread: undefined, addressed: { backend: first, rest: "" }, text: "" };
  }

  /**
   * Downloads, size-checks and transcribes the voice message, and shows the transcript in the
   * thread (`🎙️ Alice: "…"`). The prompt text (a caption's `rest`, then the transcript), or
   * undefined after a one-line notice of what failed: then nothing goes to the agent.
   */
  async transcript(msg: IncomingMessage, rest: string, reply: Reply): Promise<string | undefined> {
    const transcriber = this.d.transcriber;
    if (!transcriber) {
      await reply(howToEnable);
      return undefined;
    }
    const size = (msg.content.info as { size?: unknown } | undefined)?.size;
    if (typeof size === "number" && size > transcriber.maxBytes) {
      await reply(`⚠️ The voice message is ${megabytes(size)}; transcription takes at most ${megabytes(transcriber.maxBytes)} (\`transcription.maxBytes\`).`);
      return undefined;
    }
    const release = this.d.typing?.hold(msg.roomId);
    let said: string;
    try {
      const [audio] = await downloadMessageFiles(this.d.client, msg, transcriber.maxBytes).catch((err: unknown) => {
        throw new Error(`could not download the voice message: ${(err as Error).message}`);
      });
      if (!audio) throw new Error("the message carries no audio file (no mxc:// url)");
      said = await transcriber.transcribe(audio);
    } catch (err) {
      this.d.log.warn({ err, roomId: msg.roomId, eventId: msg.eventId }, "could not transcribe a voice message");
      await reply(`⚠️ Transcription failed: ${(err as Error).message.replace(/\.$/, "")}. Nothing was sent to the agent.`);
      return undefined;
    } finally {
      release?.();
    }
    if (said.length === 0) {
      await reply("⚠️ Transcription failed: no speech was recognised in the voice message. Nothing was sent to the agent.");
      return undefined;
    }
    const name = (await this.d.displayName?.(msg.roomId, msg.sender).catch(() => undefined)) ?? /^@([^:]+)/.exec(msg.sender)?.[1] ?? msg.sender;
    await reply(`🎙️ ${inline(name)}: "${inline(said)}"`, { plainBody: true });
    return rest.trim() ? `${rest.trim()}\n\n${said}` : said;
  }

  /** A direct chat: the sender and the bot are the room's only members. */
  private async isDirect(msg: IncomingMessage): Promise<boolean> {
    try {
      const members = await this.d.client.getJoinedRoomMembers(msg.roomId);
      return members.length === 2 && members.includes(msg.sender) && members.includes(this.d.botUserId);
    } catch (err) {
      this.d.log.debug({ err, roomId: msg.roomId }, "could not read the room's members");
      return false;
    }
  }
}
