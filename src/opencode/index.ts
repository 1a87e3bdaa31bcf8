// Builds the OpenCode backend: its server (the embedded one, or the configured URL), the
// connection and its event stream, the turn runner, the permission desk, and the lifecycle the
// bot drives through the AgentBackend hooks. app.ts knows none of these parts.
import { resolve } from "node:path";
import type { MatrixClient } from "matrix-bot-sdk";
import { ConfigError } from "../config/load.ts";
import type { BotConfig } from "../config/schema.ts";
import type { BotMetrics } from "../http/metrics.ts";
import { addSecret, type Logger } from "../log.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
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
import { restartEmbeddedOpencode, startEmbeddedOpencode, type EmbeddedServer, type EmbeddedServerOptions } from "./embedded-server.ts";
import { PermissionDesk } from "./permission-desk.ts";
import { botStateHidden, chooseSandbox } from "../process/sandbox.ts";
import { generateOpencodeAuth } from "./server-auth.ts";
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

  let embedded: EmbeddedServer | undefined;
  let embeddedOptions: EmbeddedServerOptions | undefined;
  // A server the bot starts gets a password of its own (kept across `!oc restart-server`), so
  // other local processes cannot drive it, and an environment without the bot's secrets.
  let auth = { username: c.username, password: c.password };
  if (c.serverUrl === undefined) {
    const ocLog = log.child({ component: "opencode-server" });
    const generated = generateOpencodeAuth();
    addSecret(generated.password);
    auth = generated;
    const sandbox = chooseSandbox(c.sandbox, { writable: c.projectRoots ?? [], ...botStateHidden(config.database.path, d.configFile) }, { who: "the embedded OpenCode server", warn: (msg) => log.warn(msg), refuse: (msg) => new ConfigError(msg) });
    embeddedOptions = { cwd: workspaceDir, passEnv: c.passEnv, auth: generated, sandbox, onLog: (line) => ocLog.debug(line) };
    embedded = await startEmbeddedOpencode(embeddedOptions).catch(explainEmbeddedFailure);
    log.info({ url: embedded.url, pid: embedded.pid, sandbox: sandbox ? "bwrap" : "none" }, "started embedded OpenCode server");
  } else {
    await checkExternalOpencode(c.serverUrl, auth, d.kv, log);
  }
  const url = c.serverUrl ?? (embedded as EmbeddedServer).url;
  const conn = new OpencodeConnection({
    url,
    directory: workspaceDir,
    healthCheckIntervalMs: c.healthCheckIntervalMs,
    maxRetries: c.maxRetries,
    retryDelayMs: c.retryDelayMs,
    username: auth.username,
    password: auth.password,
    log: log.child({ component: "opencode" }),
  });
  const runner = new TurnRunner({
    db: d.db, conn, threads: d.threads, turns: d.turns, inbox: d.inbox, sender: d.sender, names: d.names, workspaceDir,
    log: log.child({ component: "turns" }),
    editWindowMs: config.rendering.editWindowMs,
    completionNoticeAfterMs: config.rendering.completionNoticeAfterMs,
    onTurnEnd: (outcome) => d.metrics.turnEnded(outcome),
  });
  // Only a server the bot started can be restarted by it (`!oc restart-server`); same port, so the client keeps its URL.
  const restartServer = embeddedOptions
    ? async (): Promise<{ oldPid: number; newPid: number; connected: boolean }> => {
        const old = embedded as EmbeddedServer;
        embedded = await restartEmbeddedOpencode(old, embeddedOptions as EmbeddedServerOptions);
        log.info({ url: embedded.url, oldPid: old.pid, pid: embedded.pid }, "restarted embedded OpenCode server");
        return { oldPid: old.pid, newPid: embedded.pid, connected: await conn.resubscribe() };
      }
    : undefined;
  const permissions = new PermissionDesk({
    conn, threads: d.threads, sender: d.sender, log, names: d.names,
    store: new PermissionStore(d.db),
    prefix: config.commands.prefix,
    prompter: (sessionId) => runner.prompter(sessionId),
    directoryOf: (sessionId): string => backend.directoryOfSession(sessionId),
  });

  // Scheduled prompts wait for the first reconcile: a session's turn from before a restart must be known first.
  let reconciled = false;
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
      .finally(() => (reconciled = true));
    void permissions.reconcile().catch((err: unknown) => log.error({ err }, "reconciling permissions failed"));
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
      if (embedded) await embedded.stop();
    },
    ready: () => reconciled && conn.state === "connected",
  };
  const projectRoots = (c.projectRoots ?? [workspaceDir]).map((r) => resolve(r));
  const backend = new OpencodeBackend(
    {
      prefix: config.commands.prefix, conn, runner, threads: d.threads, rooms: d.rooms, sender: d.sender, client: d.client,
      names: d.names, workspaceDir, log, db: d.db, restartServer, permissions, projectRoots, lifecycle,
    },
    opencodeCommands,
  );
  return backend;
}
