import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { BotProcess } from "../harness/bot-process.ts";
import { MatrixTestUser, type MatrixEvent } from "../harness/matrix-user.ts";
import { loadStackInfo, type StackInfo } from "../harness/stack.ts";
import { registerUser, type RegisteredUser } from "../harness/synapse.ts";

export interface TestEnvOptions {
  /** Short name, part of every user name, so suites never share accounts. */
  name: string;
  /** Extra bot environment (config overrides). */
  botEnv?: Record<string, string>;
  /** More bot environment that needs the test room's id (e.g. BOT_NOTIFY_ROOM). */
  botEnvForRoom?: (roomId: string) => Record<string, string>;
  editWindowMs?: number;
  /** The bot logs in with MATRIX_USER_ID + MATRIX_PASSWORD (a random password) instead of MATRIX_ACCESS_TOKEN. */
  botPasswordLogin?: boolean;
  /** A homeserver of the suite's own (e.g. one with Synapse's default rate limits); default: the shared one. */
  synapse?: { baseUrl: string; sharedSecret: string };
}

/**
 * A room with the bot and three people: alice and bob may use the bot, mallory may not.
 * In the spirit of hookshot's E2ETestEnv: named users, a typed bot config, one teardown.
 */
export class TestEnv {
  readonly stack: StackInfo;
  readonly dataDir: string;
  readonly dbPath: string;
  readonly users: Record<"alice" | "bob" | "mallory", MatrixTestUser>;
  readonly roomId: string;
  readonly botUserId: string;
  /** The accounts as registered, tokens included (for the secret scan, or to act as the bot's own user). */
  readonly accounts: Record<"bot" | "alice" | "bob" | "mallory", RegisteredUser>;
  /** The homeserver this environment uses. */
  readonly homeserver: { baseUrl: string; sharedSecret: string };
  bot: BotProcess;
  private readonly botEnv: Record<string, string>;

  private constructor(f: Pick<TestEnv, "stack" | "dataDir" | "dbPath" | "users" | "roomId" | "botUserId" | "bot" | "accounts" | "homeserver"> & { botEnv: Record<string, string> }) {
    this.stack = f.stack;
    this.dataDir = f.dataDir;
    this.dbPath = f.dbPath;
    this.users = f.users;
    this.roomId = f.roomId;
    this.botUserId = f.botUserId;
    this.bot = f.bot;
    this.accounts = f.accounts;
    this.homeserver = f.homeserver;
    this.botEnv = f.botEnv;
  }

  static async create(opts: TestEnvOptions): Promise<TestEnv> {
    const stack = loadStackInfo();
    const hs = opts.synapse ?? stack.synapse;
    const suffix = `${opts.name}-${Date.now().toString(36)}`;
    const reg = (who: string, password?: string) => registerUser(hs.baseUrl, hs.sharedSecret, `${who}-${suffix}`, password === undefined ? {} : { password });
    const botPassword = opts.botPasswordLogin ? `pw-${randomBytes(16).toString("hex")}` : undefined;
    const [botAccount, a, b, m] = await Promise.all([reg("bot", botPassword), reg("alice"), reg("bob"), reg("mallory")]);
    const users = {
      alice: new MatrixTestUser(hs.baseUrl, a),
      bob: new MatrixTestUser(hs.baseUrl, b),
      mallory: new MatrixTestUser(hs.baseUrl, m),
    };
    await Promise.all(Object.values(users).map((u) => u.startSync()));
    // A failed set-up must not leave sync loops or a bot running: the test process would never exit.
    let bot: BotProcess | undefined;
    try {
    const roomId = await users.alice.createRoom({ name: `bot test ${suffix}`, invite: [botAccount.userId, b.userId, m.userId] });
    await Promise.all([users.bob.joinRoom(roomId), users.mallory.joinRoom(roomId)]);
    const dataDir = mkdtempSync(join(stack.workDir, `bot-${opts.name}-`));
    const dbPath = join(dataDir, "bot.db");
    const botEnv: Record<string, string> = {
      MATRIX_HOMESERVER_URL: hs.baseUrl,
      ...(botPassword === undefined ? { MATRIX_ACCESS_TOKEN: botAccount.accessToken } : { MATRIX_USER_ID: botAccount.userId, MATRIX_PASSWORD: botPassword }),
      BOT_ALLOWED_USERS: `${a.userId},${b.userId}`,
      OPENCODE_SERVER_URL: stack.opencode.url,
      OPENCODE_WORKSPACE_DIR: stack.workspaceDir,
      BOT_DATABASE_PATH: dbPath,
      BOT_HTTP_PORT: "0",
      BOT_EDIT_WINDOW_MS: String(opts.editWindowMs ?? 500),
      LOG_LEVEL: "debug",
      BOT_CONFIG: "/dev/null",
      ...opts.botEnv,
      ...opts.botEnvForRoom?.(roomId),
    };
    bot = await BotProcess.start(botEnv);
    const accounts = { bot: botAccount, alice: a, bob: b, mallory: m };
    const homeserver = { baseUrl: hs.baseUrl, sharedSecret: hs.sharedSecret };
    const env = new TestEnv({ stack, dataDir, dbPath, users, roomId, botUserId: botAccount.userId, bot, botEnv, accounts, homeserver });
    await users.alice.waitForRoomEvent({
      roomId,
      type: "m.room.member",
      match: (e) => e.state_key === botAccount.userId && e.content.membership === "join",
      description: "the bot joining the room",
      timeoutMs: 30_000,
    });
    return env;
    } catch (err) {
      await bot?.stop("SIGKILL");
      await Promise.all(Object.values(users).map((u) => u.stopSync()));
      throw err;
    }
  }

  /** Stops the bot (SIGTERM by default) and starts a new process on the same database. */
  async restartBot(signal: NodeJS.Signals = "SIGTERM"): Promise<{ exitCode: number | null }> {
    const exitCode = await this.bot.stop(signal);
    this.bot = await BotProcess.start(this.botEnv);
    return { exitCode };
  }

  /** Starts the bot again (after it died, or stopping it with `signal`) with some environment variables changed (undefined: removed). */
  async restartBotWith(changes: Record<string, string | undefined>, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.bot.stop(signal);
    for (const [k, v] of Object.entries(changes)) {
      if (v === undefined) delete this.botEnv[k];
      else this.botEnv[k] = v;
    }
    this.bot = await BotProcess.start(this.botEnv);
  }

  /** Reads the bot's database the way an operator would (read-only, while the bot runs). */
  query<T>(sql: string, ...params: unknown[]): T[] {
    const db = new Database(this.dbPath, { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  }

  /** The bot's replies in a thread, oldest first. */
  async botReplies(threadRoot: string): Promise<MatrixEvent[]> {
    const events = await this.users.alice.threadEvents(this.roomId, threadRoot);
    return events.filter((e) => e.sender === this.botUserId && e.type === "m.room.message");
  }

  /** Waits for a message from the bot (not an edit) matching `match`, as alice sees it. */
  waitForBot(description: string, match: (e: MatrixEvent) => boolean, timeoutMs = 30_000): Promise<MatrixEvent & { receivedAt: number }> {
    return this.users.alice.waitForRoomEvent({
      roomId: this.roomId,
      sender: this.botUserId,
      type: "m.room.message",
      match: (e) => (e.content["m.relates_to"] as { rel_type?: string } | undefined)?.rel_type !== "m.replace" && match(e),
      description,
      timeoutMs,
    });
  }

  /** Sends a command and returns the body of the bot's threaded answer to it. */
  async ask(body: string, opts: { threadRoot?: string; as?: "alice" | "bob" | "mallory" } = {}): Promise<string> {
    const user = this.users[opts.as ?? "alice"];
    const id = await user.sendText(this.roomId, body, opts.threadRoot ? { threadRoot: opts.threadRoot } : {});
    const answer = await this.waitForBot(`the answer to ${body}`, (e) => {
      const rel = e.content["m.relates_to"] as { "m.in_reply_to"?: { event_id?: string } } | undefined;
      return rel?.["m.in_reply_to"]?.event_id === id;
    });
    return String(answer.content.body);
  }

  async modelRequests(): Promise<Array<{ at: number; kind: string; lastUserText: string }>> {
    const res = await fetch(`${this.stack.model.controlUrl}/_script/requests`);
    return (await res.json()) as Array<{ at: number; kind: string; lastUserText: string }>;
  }

  async close(): Promise<void> {
    await this.bot.stop("SIGTERM");
    await Promise.all(Object.values(this.users).map((u) => u.stopSync()));
  }
}

export interface FinalReply {
  replyId: string;
  body: string;
  editCount: number;
  /** ms from `sentAt` to the first version of the reply, as seen by alice's sync. */
  firstSeenAfterMs: number;
  /** ms from `sentAt` to the final version. */
  finalSeenAfterMs: number;
}

const isFinal = (body: string): boolean => /\n— \S.*$/.test(body) || body.startsWith("— ");

/** Waits for the bot's reply to `promptId` in `threadRoot` to reach its final state (the footer line). */
export async function waitForFinalReply(env: TestEnv, threadRoot: string, promptId: string, sentAt: number, timeoutMs = 60_000): Promise<FinalReply> {
  const alice = env.users.alice;
  const first = await alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    type: "m.room.message",
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } | undefined;
      return rel?.rel_type === "m.thread" && rel.event_id === threadRoot && rel["m.in_reply_to"]?.event_id === promptId;
    },
    description: `the bot's reply to ${promptId}`,
    timeoutMs,
  });
  const replyBody = (e: MatrixEvent): string | undefined => {
    const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
    if (e.event_id === first.event_id) return e.content.body as string;
    if (rel?.rel_type === "m.replace" && rel.event_id === first.event_id) return (e.content["m.new_content"] as { body: string }).body;
    return undefined;
  };
  const last = await alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const body = replyBody(e);
      return body !== undefined && isFinal(body);
    },
    description: `the final version of reply ${first.event_id}`,
    timeoutMs,
  });
  const latest = await alice.latestBody(env.roomId, first.event_id);
  return {
    replyId: first.event_id,
    body: latest.body,
    editCount: latest.editCount,
    firstSeenAfterMs: first.receivedAt - sentAt,
    finalSeenAfterMs: last.receivedAt - sentAt,
  };
}

/** Splits a final reply into what the agent said and the footer line. */
export function splitFooter(body: string): { text: string; footer: string } {
  const i = body.lastIndexOf("\n\n— ");
  return i < 0 ? { text: "", footer: body } : { text: body.slice(0, i), footer: body.slice(i + 2) };
}

/** Bot environment for the embedded server (no OpenCode URL): its workspace, an OpenCode config, and a home of its own under `dir`. */
export function embeddedServerEnv(dir: string, workspace: string, opencodeConfig: string): Record<string, string> {
  const home = join(dir, "home");
  return {
    OPENCODE_SERVER_URL: "",
    OPENCODE_WORKSPACE_DIR: workspace,
    OPENCODE_CONFIG: opencodeConfig,
    HOME: home,
    XDG_DATA_HOME: join(home, "data"),
    XDG_CONFIG_HOME: join(home, "config"),
    XDG_STATE_HOME: join(home, "state"),
    XDG_CACHE_HOME: join(home, "cache"),
  };
}
