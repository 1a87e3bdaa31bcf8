// Builds the OpenCode backend: its server (the embedded one, or the configured URL), the
// connection and its event stream, the turn runner, the permission desk, and the lifecycle the
// bot drives through the AgentBackend hooks. app.ts knows none of these parts.
import { resolve } from "node:path";
import type { MatrixClient } from "matrix-bot-sdk";
import { ConfigError } from "../config/load.ts";
import type { BotConfig } from "../config/schema.ts";
import type { BotMetrics } from "../http/metrics.ts";
import type { Logger } from "../log.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { TurnEngine } from "../turns/engine.ts";
import type { ConversationSettings } from "../turns/settings.ts";
import { checkExternalOpencode, explainEmbeddedFailure } from "./server-check.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { KeyValue } from "../store/key-value.ts";
import { PermissionStore } from "../store/permissions.ts";
import type { RoomStore } from "../store/rooms.ts";
import type { ThreadStore } from "../store/threads.ts";
import type { TurnStore } from "../store/turns.ts";
import { OpencodeBackend, type OpencodeLifecycle } from "./backend.ts";
import { opencodeCommands } from "./commands/index.ts";
import { OpencodeConnection } from "./connection.ts";
import { PermissionDesk } from "./permission-desk.ts";
import { QuestionDesk } from "./question-desk.ts";
import { QuestionStore } from "./question-store.ts";
import { botStateHidden, chooseSandbox } from "../process/sandbox.ts";
import { EmbeddedServerKeeper } from "./server-record.ts";
import { TurnRunner } from "./turn-runner.ts";

export { OpencodeBackend } from "./backend.ts";

export interface OpencodeDeps {
  db: Db;
  kv: KeyValue;
  inbox: Inbox;
  threads: ThreadStore;
  turns: TurnStore;
  rooms: RoomStore;
  sender: MatrixSender;
  client: MatrixClient;
  names: DisplayNames;
  metrics: BotMetrics;
  engine: TurnEngine;
  settings?: ConversationSettings | undefined;
  log: Logger;
  /** The bot's config file, hidden from the agent by the sandbox. */
  configFile?: string | undefined;
}

/** How long start() waits for the first connection before it lets the bot go on (and keeps trying). */
const connectWaitMs = 15_000;

/** Starts the embedded server if no URL is configured (or checks the configured one), and wires the rest. */
export async function createOpencodeBackend(config: BotConfig, d: OpencodeDeps): Promise<OpencodeBackend> {
  const c = config.opencode;
  const log = d.log;
  const workspaceDir = resolve(c.workspaceDir);

  // A server the bot starts gets a password of its own (kept across `!oc restart-server`), so
  // other local processes cannot drive it, and an environment without the bot's secrets. The
  // keeper adopts the server a crashed run left behind, or reaps it (server-record.ts).
  let auth = { username: c.username, password: c.password };
  let url = c.serverUrl ?? "";
  const keeper = c.serverUrl === undefined ? new EmbeddedServerKeeper({ db: d.db, log }) : undefined;
  if (keeper) {
    const ocLog = log.child({ component: "opencode-server" });
    const sandbox = chooseSandbox(c.sandbox, { writable: c.projectRoots ?? [], ...botStateHidden(config.database.path, d.configFile) }, { who: "the embedded OpenCode server", warn: (msg) => log.warn(msg), refuse: (msg) => new ConfigError(msg) });
    const kept = await keeper.start({ cwd: workspaceDir, passEnv: c.passEnv, sandbox, onLog: (line) => ocLog.debug(line) }).catch(explainEmbeddedFailure);
    auth = kept.auth;
    url = kept.server.url;
  } else {
    await checkExternalOpencode(url, auth, d.kv, log);
  }
  const conn = new OpencodeConnection({
    url,
    directory: workspaceDir,
    healthCheckIntervalMs: c.healthCheckIntervalMs,
    maxRetries: c.maxRetries,
    retryDelayMs: c.retryDelayMs,
    requestTimeoutMs: c.requestTimeoutMs,
    username: auth.username,
    password: auth.password,
    log: log.child({ component: "opencode" }),
  });
  const runner = new TurnRunner({
    db: d.db, conn, threads: d.threads, turns: d.turns, inbox: d.inbox, sender: d.sender, names: d.names, workspaceDir,
    log: log.child({ component: "turns" }),
    engine: d.engine,
    completionNoticeAfterMs: config.rendering.completionNoticeAfterMs,
    onTurnEnd: (outcome) => d.metrics.turnEnded(outcome),
  });
  // Only a server the bot started can be restarted by it (`!oc restart-server`); same port, so the client keeps its URL.
  const restartServer = keeper
    ? async (): Promise<{ oldPid: number; newPid: number; connected: boolean }> => {
        const { oldPid, server } = await keeper.restart();
        log.info({ url: server.url, oldPid, pid: server.pid }, "restarted embedded OpenCode server");
        return { oldPid, newPid: server.pid, connected: await conn.resubscribe() };
      }
    : undefined;
  const permissions = new PermissionDesk({
    conn, threads: d.threads, sender: d.sender, log, names: d.names,
    store: new PermissionStore(d.db),
    prefix: config.commands.prefix,
    prompter: (sessionId) => runner.prompter(sessionId),
    directoryOf: (sessionId): string => backend.directoryOfSession(sessionId),
  });
  const questions = new QuestionDesk({
    conn, threads: d.threads, sender: d.sender, log, names: d.names, workspaceDir,
    store: new QuestionStore(d.db),
    prefix: config.commands.prefix,
    prompter: (sessionId) => runner.prompter(sessionId),
    directoryOf: (sessionId): string => backend.directoryOfSession(sessionId),
  });

  // Scheduled prompts wait for the first reconcile: a session's turn from before a restart must be known first.
  let reconciled = false;
  let firstReconciled: () => void = () => {};
  const firstReconcile = new Promise<void>((r) => (firstReconciled = r));
  let wasConnected = false;
  conn.onState((state, detail) => {
    log.info({ state, url: conn.url, ...detail }, "OpenCode connection");
    void runner.onConnectionState(state, c).catch((err: unknown) => log.error({ err }, "telling threads about the connection failed"));
    if (state !== "connected") return;
    if (wasConnected) d.metrics.opencodeReconnected();
    wasConnected = true;
    void runner
      .reconcile()
      .catch((err: unknown) => log.error({ err }, "reconciling turns failed"))
      .finally(() => {
        reconciled = true;
        firstReconciled();
      });
    void permissions.reconcile().catch((err: unknown) => log.error({ err }, "reconciling permissions failed"));
    void questions.reconcile().catch((err: unknown) => log.error({ err }, "reconciling questions failed"));
  });

  const lifecycle: OpencodeLifecycle = {
    start: async () => {
      conn.start();
      const end = Date.now() + connectWaitMs;
      while (conn.state !== "connected" && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
      if (conn.state !== "connected") log.warn({ url }, "OpenCode is not reachable yet; will keep trying");
    },
    stop: async () => {
      await runner.settle();
      await conn.stop();
      await keeper?.stop();
    },
    ready: () => reconciled && conn.state === "connected",
    // New room events wait for the turns of the last run: a follow-up must find its session's turn
    // tracked (and queue behind it), never start a second one. If OpenCode is not reachable at
    // start, recovery runs when it connects, and prompts meanwhile are told it is away.
    reconcile: () => (conn.state === "connected" ? firstReconcile : Promise.resolve()),
  };
  const projectRoots = (c.projectRoots ?? [workspaceDir]).map((r) => resolve(r));
  const backend = new OpencodeBackend(
    {
      prefix: config.commands.prefix, conn, runner, threads: d.threads, rooms: d.rooms, sender: d.sender, client: d.client,
      names: d.names, workspaceDir, log, db: d.db, restartServer, permissions, questions, projectRoots, lifecycle, settings: d.settings,
    },
    opencodeCommands,
  );
  return backend;
}
