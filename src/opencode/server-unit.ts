// One OpenCode server with all the bot keeps for it: the embedded keeper (or the configured URL),
// the connection and its event stream, the turn runner, the permission and question desks, and
// its lifecycle (start, reconcile after each connect, stop). index.ts builds one per configured
// server; the backend routes each room and thread to its server's unit.
import type { MatrixClient } from "matrix-bot-sdk";
import type { BotConfig } from "../config/schema.ts";
import { ConfigError } from "../config/load.ts";
import type { BotMetrics } from "../http/metrics.ts";
import type { Logger } from "../log.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { botStateHidden, chooseSandbox } from "../process/sandbox.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { KeyValue } from "../store/key-value.ts";
import { PermissionStore } from "../store/permissions.ts";
import type { RoomStore } from "../store/rooms.ts";
import type { ThreadStore } from "../store/threads.ts";
import type { TurnStore } from "../store/turns.ts";
import type { TurnEngine } from "../turns/engine.ts";
import type { ConversationSettings } from "../turns/settings.ts";
import { OpencodeConnection } from "./connection.ts";
import { PermissionDesk } from "./permission-desk.ts";
import { QuestionDesk } from "./question-desk.ts";
import { QuestionStore } from "./question-store.ts";
import { checkExternalOpencode, explainEmbeddedFailure, opencodeProblemText, probeOpencode, rememberOpencodeReached } from "./server-check.ts";
import { EmbeddedServerKeeper } from "./server-record.ts";
import { ServerQueue, ServerThreads, ServerTurns, serverScope, type ServerScope } from "./server-scope.ts";
import { TurnRunner } from "./turn-runner.ts";

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

export interface OpencodeLifecycle {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves when the turns of the last run are recovered (at once if OpenCode is not reachable yet). */
  reconcile(): Promise<void>;
  /** Connected, and the turns of the last run reconciled: scheduled prompts may go. */
  ready(): boolean;
}

/** One configured server, as index.ts reads it from the config. */
export interface ServerSpec {
  name: string;
  /** Unset: the bot starts its own `opencode serve` (only the server `default` can be that). */
  url?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** The directory new sessions work in, on the server's machine. */
  workspaceDir: string;
  /** The directories `!oc project` may choose, on the server's machine. */
  projectRoots: string[];
  /** The server of opencode.serverUrl (or the embedded one): its directories are on the bot's machine too. */
  primary: boolean;
  /** Several servers are configured: the notices in threads name the server. */
  named: boolean;
}

export interface ServerUnit {
  readonly name: string;
  readonly spec: ServerSpec;
  readonly conn: OpencodeConnection;
  readonly runner: TurnRunner;
  readonly permissions: PermissionDesk;
  readonly questions: QuestionDesk;
  /** The threads table as this server sees it (session ids are per server). */
  readonly threads: ServerThreads;
  readonly scope: ServerScope;
  readonly lifecycle: OpencodeLifecycle;
  /** Restarts the server the bot started itself; undefined for a server at a URL. */
  readonly restartServer?: (() => Promise<{ oldPid: number; newPid: number; connected: boolean }>) | undefined;
  /** The OpenCode version the server reported when the bot started (undefined: it did not answer then). */
  readonly version: string | undefined;
  /** Why the server did not answer when the bot started (wrong URL or credentials, or away), until it does. */
  readonly problem: string | undefined;
  /** The directory a session of this server works in (its thread's, else the server's workspace). */
  directoryOf(sessionId: string): string;
}

/** How long start() waits for the first connection before it lets the bot go on (and keeps trying). */
const connectWaitMs = 15_000;

/** "the OpenCode server" (one server), or "the OpenCode server `gpu`" (several). */
export const serverLabel = (spec: Pick<ServerSpec, "name" | "named">): string => (spec.named ? `the OpenCode server \`${spec.name}\`` : "the OpenCode server");

/** Starts the embedded server (or checks the one at the URL) and wires this server's parts. */
export async function createServerUnit(config: BotConfig, spec: ServerSpec, d: OpencodeDeps): Promise<ServerUnit> {
  const c = config.opencode;
  const log = spec.named ? d.log.child({ server: spec.name }) : d.log;
  // A server the bot starts gets a password of its own (kept across `!oc restart-server`), so
  // other local processes cannot drive it, and an environment without the bot's secrets. The
  // keeper adopts the server a crashed run left behind, or reaps it (server-record.ts).
  let auth = { username: spec.username, password: spec.password };
  let url = spec.url ?? "";
  let version: string | undefined;
  let startProblem: string | undefined;
  /** It answered its health check just now (the event stream need not ask again). */
  let answered = false;
  const keeper = spec.url === undefined ? new EmbeddedServerKeeper({ db: d.db, log }) : undefined;
  if (keeper) {
    const ocLog = log.child({ component: "opencode-server" });
    const sandbox = chooseSandbox(c.sandbox, { writable: c.projectRoots ?? [], ...botStateHidden(config.database.path, d.configFile) }, { who: "the embedded OpenCode server", warn: (msg) => log.warn(msg), refuse: (msg) => new ConfigError(msg) });
    const kept = await keeper.start({ cwd: spec.workspaceDir, passEnv: c.passEnv, sandbox, onLog: (line) => ocLog.debug(line) }).catch(explainEmbeddedFailure);
    auth = kept.auth;
    url = kept.server.url;
    answered = true;
  } else if (spec.primary) {
    const check = await checkExternalOpencode(url, auth, d.kv, log);
    version = check.version;
    answered = check.reached;
  } else {
    // Another machine's server never stops the bot: its rooms are told it is away, the others go on.
    const probe = await probeOpencode(url, auth);
    if (probe.ok) {
      version = probe.version;
      answered = true;
      rememberOpencodeReached(d.kv, url);
    } else {
      startProblem = opencodeProblemText(url, probe).replace(/\(opencode\.serverUrl[^)]*\)/, `(opencode.servers.${spec.name}.url)`);
      log.warn({ url, problem: probe.problem }, "OpenCode server not reachable at start; the bot keeps trying");
    }
  }
  const conn = new OpencodeConnection({
    url,
    directory: spec.workspaceDir,
    healthCheckIntervalMs: c.healthCheckIntervalMs,
    maxRetries: c.maxRetries,
    retryDelayMs: c.retryDelayMs,
    requestTimeoutMs: c.requestTimeoutMs,
    username: auth.username,
    password: auth.password,
    log: log.child({ component: "opencode" }),
  });
  const threads = new ServerThreads(d.db, spec.name);
  const scope = serverScope(d.threads, spec.name);
  const runner = new TurnRunner({
    db: d.db, conn, threads, turns: new ServerTurns(d.db, scope), queue: new ServerQueue(d.db, scope), inbox: d.inbox, sender: d.sender, names: d.names,
    workspaceDir: spec.workspaceDir,
    log: log.child({ component: "turns" }),
    engine: d.engine,
    serverLabel: spec.named ? serverLabel(spec) : undefined,
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
  const directoryOf = (sessionId: string): string => threads.bySession("opencode", sessionId)[0]?.directory ?? spec.workspaceDir;
  const owns = scope.owns;
  const permissions = new PermissionDesk({
    conn, threads, sender: d.sender, log, names: d.names, owns,
    store: new PermissionStore(d.db),
    prefix: config.commands.prefix,
    prompter: (sessionId) => runner.prompter(sessionId),
    directoryOf,
  });
  const questions = new QuestionDesk({
    conn, threads, sender: d.sender, log, names: d.names, workspaceDir: spec.workspaceDir, owns,
    store: new QuestionStore(d.db),
    prefix: config.commands.prefix,
    prompter: (sessionId) => runner.prompter(sessionId),
    directoryOf,
  });

  // Scheduled prompts wait for the first reconcile: a session's turn from before a restart must be known first.
  let reconciled = false;
  let firstReconciled: () => void = () => {};
  const firstReconcile = new Promise<void>((r) => (firstReconciled = r));
  let wasConnected = false;
  conn.onGone(() => runner.serverGone());
  conn.onState((state, detail) => {
    log.info({ state, url: conn.url, ...detail }, "OpenCode connection");
    void runner.onConnectionState(state, c).catch((err: unknown) => log.error({ err }, "telling threads about the connection failed"));
    if (state !== "connected") return;
    const wasConnectedBefore = wasConnected;
    if (wasConnected) d.metrics.opencodeReconnected(spec.name);
    wasConnected = true;
    startProblem = undefined;
    // The start's check has just read it; after a reconnect the server may be another version.
    if (wasConnectedBefore || version === undefined) void conn.client.global.health().then((h) => (version = h.data?.version ?? version), () => undefined);
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
      conn.start({ justChecked: answered });
      // A server that did not answer the probe is not waited for: the other servers' rooms go on.
      if (!(startProblem === undefined && (await conn.waitConnected(connectWaitMs)))) log.warn({ url }, "OpenCode is not reachable yet; will keep trying");
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
  return {
    name: spec.name, spec, conn, runner, permissions, questions, threads, scope, lifecycle, restartServer, directoryOf,
    get version() {
      return version;
    },
    get problem() {
      return startProblem;
    },
  };
}
