import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { AccessPolicy } from "./access/policy.ts";
import { CommandRouter } from "./commands/router.ts";
import type { BotConfig } from "./config/schema.ts";
import { BotMetrics } from "./http/metrics.ts";
import { startHttpServer } from "./http/server.ts";
import { Notifier } from "./notify/notifier.ts";
import { addSecret, type Logger } from "./log.ts";
import { DurableMatrixClient, resolveAccessToken } from "./matrix/bot-client.ts";
import { DisplayNames } from "./matrix/display-names.ts";
import { MessageIntake } from "./matrix/intake.ts";
import { RoomMembership } from "./matrix/rooms.ts";
import { MatrixSender } from "./matrix/sender.ts";
import { OpencodeBackend } from "./opencode/backend.ts";
import { OpencodeConnection } from "./opencode/connection.ts";
import { PermissionDesk } from "./opencode/permission-desk.ts";
import { TurnRunner } from "./opencode/turn-runner.ts";
import { createLettaBackend } from "./letta/index.ts";
import { downloadMessageFiles } from "./matrix/files.ts";
import { PermissionStore } from "./store/permissions.ts";
import { RoomStore } from "./store/rooms.ts";
import { restartEmbeddedOpencode, startEmbeddedOpencode, type EmbeddedServer, type EmbeddedServerOptions } from "./opencode/embedded-server.ts";
import { chooseSandbox } from "./opencode/sandbox.ts";
import { generateOpencodeAuth } from "./opencode/server-auth.ts";
import { Scheduler } from "./schedule/scheduler.ts";
import { ScheduleStore } from "./schedule/store.ts";
import { openDatabase } from "./store/db.ts";
import { Inbox } from "./store/inbox.ts";
import { KeyValue } from "./store/key-value.ts";
import { SqliteSyncStorage } from "./store/sync-storage.ts";
import { ThreadStore } from "./store/threads.ts";
import { TurnStore } from "./store/turns.ts";

export interface RunningBot {
  userId: string;
  httpPort: number;
  opencodeUrl: string;
  stop(): Promise<void>;
}

const waitFor = async (check: () => boolean, timeoutMs: number): Promise<boolean> => {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
};

/** Wires the parts together and starts them; the flow is Matrix → router → backend → renderer → Matrix. */
export async function startBot(config: BotConfig, log: Logger, opts: { configFile?: string | undefined } = {}): Promise<RunningBot> {
  const db = openDatabase(config.database.path);
  const kv = new KeyValue(db);
  const inbox = new Inbox(db);
  const threads = new ThreadStore(db);
  const turns = new TurnStore(db);
  const notBefore = Number(kv.getOrSet("bot.first_start_ms", String(Date.now())));
  const workspaceDir = resolve(config.opencode.workspaceDir);
  mkdirSync(workspaceDir, { recursive: true });

  let embedded: EmbeddedServer | undefined;
  let embeddedOptions: EmbeddedServerOptions | undefined;
  // A server the bot starts gets a password of its own (kept across `!oc restart-server`), so
  // other local processes cannot drive it, and an environment without the bot's secrets.
  let opencodeAuth = { username: config.opencode.username, password: config.opencode.password };
  if (config.opencode.serverUrl === undefined) {
    const ocLog = log.child({ component: "opencode-server" });
    const auth = generateOpencodeAuth();
    addSecret(auth.password);
    opencodeAuth = auth;
    const sandbox = chooseSandbox(config.opencode.sandbox, {
      writable: config.opencode.projectRoots ?? [],
      hiddenDirs: [dirname(resolve(config.database.path))],
      hiddenFiles: opts.configFile ? [resolve(opts.configFile)] : [],
    }, (msg) => log.warn(msg));
    embeddedOptions = { cwd: workspaceDir, passEnv: config.opencode.passEnv, auth, sandbox, onLog: (line) => ocLog.debug(line) };
    embedded = await startEmbeddedOpencode(embeddedOptions);
    log.info({ url: embedded.url, pid: embedded.pid, sandbox: sandbox ? "bwrap" : "none" }, "started embedded OpenCode server");
  }
  const opencodeUrl = config.opencode.serverUrl ?? (embedded as EmbeddedServer).url;
  const conn = new OpencodeConnection({
    url: opencodeUrl,
    directory: workspaceDir,
    healthCheckIntervalMs: config.opencode.healthCheckIntervalMs,
    maxRetries: config.opencode.maxRetries,
    retryDelayMs: config.opencode.retryDelayMs,
    username: opencodeAuth.username,
    password: opencodeAuth.password,
    log: log.child({ component: "opencode" }),
  });

  const accessToken = await resolveAccessToken(config.matrix, kv);
  const client = new DurableMatrixClient(config.matrix.homeserverUrl, accessToken, new SqliteSyncStorage(db));
  const userId = await client.getUserId();
  const metrics = new BotMetrics();
  const sender = new MatrixSender(client, log.child({ component: "matrix" }), () => metrics.rateLimited());
  const access = new AccessPolicy(config.access.allowedUsers, config.access.strangerNoticeIntervalMs, config.access.admins);
  const rooms = new RoomStore(db);
  const names = new DisplayNames(client);
  const runner = new TurnRunner({
    db, conn, threads, turns, inbox, sender, names, workspaceDir,
    log: log.child({ component: "turns" }),
    editWindowMs: config.rendering.editWindowMs,
    completionNoticeAfterMs: config.rendering.completionNoticeAfterMs,
    onTurnEnd: (outcome) => metrics.turnEnded(outcome),
  });
  metrics.observe({ sendCounters: sender.counters, activeSessions: () => runner.activeCount });
  const notifier = new Notifier({
    threads, turns, sender,
    isStreaming: (sessionId) => runner.isBusy(sessionId),
    defaultRoom: config.notify.defaultRoom,
    log: log.child({ component: "notify" }),
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
  const backend = new OpencodeBackend({ prefix: config.commands.prefix, conn, runner, threads, rooms, sender, client, names, workspaceDir, log, db, restartServer });
  const permissions = new PermissionDesk({
    conn, threads, sender, log, names,
    store: new PermissionStore(db),
    prefix: config.commands.prefix,
    prompter: (sessionId) => runner.prompter(sessionId),
    directoryOf: (sessionId) => backend.directoryOfSession(sessionId),
  });
  const letta = createLettaBackend(config, { db, threads, inbox, sender, displayName: (r, u) => names.get(r, u), log: log.child({ component: "letta" }) });
  const router = new CommandRouter({
    botUserId: userId, access, threads, sender, client, log,
    backends: letta ? [backend, letta] : [backend],
    services: { opencode: backend, permissions, threads, rooms, sender, client, log, projectRoots: (config.opencode.projectRoots ?? [workspaceDir]).map((r) => resolve(r)) },
    downloadFiles: (msg) => downloadMessageFiles(client, msg),
  });
  const intake = new MessageIntake({ inbox, handler: (m) => router.handle(m), log, notBefore });
  const membership = new RoomMembership({ client, access, sender, db, log });

  client.on("room.message", (roomId: string, event: Record<string, unknown>) => intake.accept(roomId, event));
  client.on("room.invite", (roomId: string, event: { sender?: string }) => void membership.onInvite(roomId, event));
  client.on("room.join", (roomId: string) => void membership.onJoin(roomId));
  client.on("room.event", (roomId: string, event: Record<string, unknown>) => {
    if (event.type === "m.reaction") intake.accept(roomId, event);
    if (event.type === "m.room.encrypted" && event.sender !== userId) void membership.tellEncrypted(roomId);
  });

  // Scheduled prompts wait for the first reconcile: a session's turn from before a restart must be known first.
  let reconciled = false;
  conn.onState((state, detail) => {
    log.info({ state, url: conn.url, ...detail }, "OpenCode connection");
    void runner.onConnectionState(state, config.opencode).catch((err: unknown) => log.error({ err }, "telling threads about the connection failed"));
    if (state === "connected") {
      void runner
        .reconcile()
        .catch((err: unknown) => log.error({ err }, "reconciling turns failed"))
        .finally(() => (reconciled = true));
      void permissions.reconcile().catch((err: unknown) => log.error({ err }, "reconciling permissions failed"));
    }
  });
  let wasConnected = false;
  conn.onState((state) => {
    if (state !== "connected") return;
    if (wasConnected) metrics.opencodeReconnected();
    wasConnected = true;
  });
  conn.start();
  if (!(await waitFor(() => conn.state === "connected", 15_000))) log.warn({ url: opencodeUrl }, "OpenCode is not reachable yet; will keep trying");

  await letta?.reconcile();
  const replayed = intake.replayPending();
  if (replayed > 0) log.info({ replayed }, "resuming messages accepted before the last stop");
  await client.start();
  // Prompts from the `send` CLI and due schedules; they wait while OpenCode is unreachable.
  const scheduler = new Scheduler({
    db, store: new ScheduleStore(db), oc: backend, threads, client,
    log: log.child({ component: "schedule" }),
    pollIntervalMs: config.schedule.pollIntervalMs,
    timezone: config.schedule.timezone,
    ready: () => reconciled && conn.state === "connected",
  });
  scheduler.start();

  const http = await startHttpServer({
    host: config.http.host,
    port: config.http.port,
    log,
    metrics,
    notify: {
      token: config.notify.token,
      deliver: (p) => notifier.deliver(p),
      onOutcome: (o) => metrics.notified(o),
      perTokenPerMinute: config.notify.perTokenPerMinute,
      perSessionPerMinute: config.notify.perSessionPerMinute,
    },
    health: async () => {
      const syncAgeMs = client.lastSyncAt === 0 ? null : Date.now() - client.lastSyncAt;
      const matrixOk = syncAgeMs !== null && syncAgeMs < 90_000 && client.lastSyncError === undefined;
      let dbOk = true;
      try {
        db.prepare("SELECT 1").get();
      } catch {
        dbOk = false;
      }
      const ocOk = conn.state === "connected";
      return {
        ok: matrixOk && dbOk && ocOk,
        matrix: { ok: matrixOk, userId, lastSyncAgeMs: syncAgeMs, error: client.lastSyncError ?? null },
        opencode: [{ ok: ocOk, url: conn.url, state: conn.state, reconnects: conn.reconnects, error: conn.lastError ?? null }],
        database: { ok: dbOk },
        activeTurns: runner.activeCount,
      };
    },
  });
  log.info({ userId, httpPort: http.port, opencodeUrl }, "bot ready");

  let stopping: Promise<void> | undefined;
  return {
    userId,
    httpPort: http.port,
    opencodeUrl,
    stop: () =>
      (stopping ??= (async () => {
        log.info("stopping: no new work, finishing replies in flight");
        client.stop();
        await intake.drain();
        await scheduler.stop();
        await Promise.all([runner.settle(), letta?.stop()]);
        await conn.stop();
        await http.close();
        if (embedded) await embedded.stop();
        db.close();
        log.info("stopped");
      })()),
  };
}
