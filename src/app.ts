import { resolve } from "node:path";
import { AccessPolicy } from "./access/policy.ts";
import type { AgentBackend, BackendHealth } from "./commands/backend.ts";
import { CommandRouter } from "./commands/router.ts";
import type { BotConfig } from "./config/schema.ts";
import { BotMetrics } from "./http/metrics.ts";
import { startHttpServer } from "./http/server.ts";
import type { Logger } from "./log.ts";
import { DurableMatrixClient } from "./matrix/bot-client.ts";
import { DisplayNames } from "./matrix/display-names.ts";
import { downloadMessageFiles } from "./matrix/files.ts";
import { preloadMarkdown } from "./matrix/format.ts";
import { guardSyncHandler } from "./matrix/guard.ts";
import { MessageIntake } from "./matrix/intake.ts";
import { RoomMembership } from "./matrix/rooms.ts";
import { MatrixSender } from "./matrix/sender.ts";
import { TypingKeeper } from "./matrix/typing.ts";
import { Notifier } from "./notify/notifier.ts";
import { createOpencodeBackend } from "./opencode/index.ts";
import { Scheduler } from "./schedule/scheduler.ts";
import { ScheduleStore } from "./schedule/store.ts";
import { verifyMatrixAccount } from "./startup/matrix-check.ts";
import { ensureDirectory, openDatabaseExplained } from "./startup/paths.ts";
import { Inbox } from "./store/inbox.ts";
import { KeyValue } from "./store/key-value.ts";
import { RoomStore } from "./store/rooms.ts";
import { SqliteSyncStorage } from "./store/sync-storage.ts";
import { ThreadStore } from "./store/threads.ts";
import { TurnStore } from "./store/turns.ts";
import { TurnEngine } from "./turns/engine.ts";
import { LiveReplyStore } from "./turns/live-replies.ts";
import { ConversationSettings } from "./turns/settings.ts";
import { sharedCommands } from "./commands/shared-commands.ts";
import { TurnNotices } from "./turns/notices.ts";
import { createTranscriber } from "./voice/transcriber.ts";

export interface RunningBot {
  userId: string;
  httpPort: number;
  stop(): Promise<void>;
}

/**
 * Wires the parts together and starts them; the flow is Matrix → router → backend → renderer →
 * Matrix. Backends come from their factories as a list; below, none is named: each is driven
 * through the AgentBackend hooks (start, reconcile, stop, health, reactions).
 * `account`: the token's check, when the caller has started it already (run.ts, while it loaded this).
 */
export async function startBot(config: BotConfig, log: Logger, opts: { configFile?: string | undefined; account?: Promise<{ userId: string; accessToken: string }> | undefined } = {}): Promise<RunningBot> {
  const db = openDatabaseExplained(config.database.path);
  const kv = new KeyValue(db);
  const inbox = new Inbox(db);
  const threads = new ThreadStore(db);
  const turns = new TurnStore(db);
  const rooms = new RoomStore(db);
  const notBefore = Number(kv.getOrSet("bot.first_start_ms", String(Date.now())));
  ensureDirectory(resolve(config.opencode.workspaceDir), "opencode.workspaceDir");
  // The homeserver and the token before anything heavy: a wrong URL or token is the commonest first-run mistake.
  const account = await (opts.account ?? verifyMatrixAccount(config.matrix, kv));
  const client = new DurableMatrixClient(config.matrix.homeserverUrl, account.accessToken, new SqliteSyncStorage(db), {
    requestTimeoutMs: config.matrix.requestTimeoutMs,
    maxConcurrentRequests: config.matrix.maxConcurrentRequests,
    userId: account.userId,
  });
  const userId = await client.getUserId();
  const metrics = new BotMetrics();
  const sender = new MatrixSender(client, log.child({ component: "matrix" }), () => metrics.rateLimited(), {
    baseWindowMs: config.rendering.editWindowMs,
    maxWindowMs: config.rendering.maxEditWindowMs,
  });
  const access = new AccessPolicy(config.access.allowedUsers, config.access.strangerNoticeIntervalMs, config.access.admins);
  const names = new DisplayNames(client);
  client.onSyncResponse = (res) => {
    try {
      names.learnFromSync(res);
    } catch (err) {
      log.warn({ err }, "could not read the members of a sync response"); // the names are then asked for, as before
    }
  };

  // "The bot is typing…" while the router hands a prompt on and while any turn in the room runs.
  const typing = new TypingKeeper(client, log.child({ component: "typing" }));
  // Every backend's turns are rendered, posted and pushed by one engine.
  const notices = new TurnNotices({ sender, names, log, completionNoticeAfterMs: config.rendering.completionNoticeAfterMs });
  const settings = new ConversationSettings(db);
  const engine = new TurnEngine({ sender, log, typing, notices, settings, replies: new LiveReplyStore(db), editWindowMs: config.rendering.editWindowMs });

  // The list of backends: adding one is one factory call here.
  const opencode = await createOpencodeBackend(config, { db, kv, inbox, threads, turns, rooms, sender, client, names, metrics, engine, settings, log, configFile: opts.configFile });
  // Letta, the ACP agents and the MCP delegation are loaded only when configured: a faster start without them.
  const letta = config.letta.baseUrl === undefined ? undefined : (await import("./letta/index.ts")).createLettaBackend(config, { db, threads, inbox, sender, engine, displayName: (r, u) => names.get(r, u), log: log.child({ component: "letta" }) });
  const acp = Object.keys(config.acp?.agents ?? {}).length === 0 ? [] : (await import("./acp/index.ts")).createAcpBackends(config, { db, inbox, threads, sender, engine, displayName: (r, u) => names.get(r, u), log, configFile: opts.configFile });
  const backends: AgentBackend[] = [opencode, ...(letta ? [letta] : []), ...acp];
  // Letta agents hand coding tasks to OpenCode through POST /mcp (letta.delegateToOpencode).
  const delegation = letta && config.letta.delegateToOpencode ? (await import("./mcp/index.ts")).createDelegation(config, { db, letta, opencode, threads, sender, names, log, botUserId: userId }) : undefined;

  metrics.observe({ sendCounters: sender.counters, matrixWaiting: () => client.lanes.queued, activeSessions: () => backends.reduce((n, b) => n + (b.activeTurns?.() ?? 0), 0) });
  // What OpenCode's notify plugin posts (sessions started outside Matrix).
  const notifier = new Notifier({
    threads, turns, sender,
    isStreaming: (sessionId) => opencode.isStreaming(sessionId),
    defaultRoom: config.notify.defaultRoom,
    log: log.child({ component: "notify" }),
  });
  const router = new CommandRouter({
    botUserId: userId, access, threads, sender, client, log, backends, typing,
    shared: sharedCommands({ settings, threads, db }),
    services: { threads, rooms, sender, client, log },
    downloadFiles: (msg) => downloadMessageFiles(client, msg),
    // Voice messages become prompts (README: "Voice messages"); without transcription.baseUrl they get the how-to.
    transcriber: createTranscriber(config.transcription), displayName: (r, u) => names.get(r, u),
  });
  const intake = new MessageIntake({ inbox, handler: (m) => router.handle(m), log, notBefore, ownUserId: userId, held: true });
  intake.startPruning(config.database.inboxRetentionMs);
  const membership = new RoomMembership({ client, access, sender, db, log });

  // A handler that throws into the SDK would end its sync batch: the events after it would be lost (guard.ts).
  const on = (name: string, handler: (roomId: string, event: Record<string, unknown>) => unknown): void => void client.on(name, guardSyncHandler(log, name, handler));
  on("room.message", (roomId, event) => intake.accept(roomId, event));
  on("room.invite", (roomId, event) => membership.onInvite(roomId, event));
  on("room.join", (roomId) => membership.onJoin(roomId));
  on("room.event", (roomId, event) => {
    names.onRoomEvent(roomId, event); // a rename shows in attributions at once
    if (event.type === "m.reaction") intake.accept(roomId, event);
    return event.type === "m.room.encrypted" && event.sender !== userId ? membership.tellEncrypted(roomId) : undefined;
  });

  const replayed = intake.replayPending();
  if (replayed > 0) log.info({ replayed }, "resuming messages accepted before the last stop");
  // The sync starts while the backends connect and recover the turns of the last run; what it
  // brings meanwhile is stored and waits in the intake (held) until they have.
  // The homeserver's default is 10 timeline events per room and sync: after a restart (or a long
  // recovery) a busy room would lose what came before the last 10, and the bot's own edits
  // are most of them. (Its own events must stay in: the SDK finds its joins among them.)
  const recovered = (async () => {
    for (const b of backends) await b.start?.();
    for (const b of backends) await b.reconcile?.();
    await delegation?.reconcile();
  })();
  const syncing = client.start({ room: { timeline: { limit: 200 } } });
  await Promise.all([recovered, syncing]);
  intake.release();
  // Prompts from the `send` CLI and due schedules; they wait while the backend is unreachable or recovering.
  const scheduler = new Scheduler({
    db, store: new ScheduleStore(db), target: opencode, threads, sender,
    log: log.child({ component: "schedule" }),
    pollIntervalMs: config.schedule.pollIntervalMs,
    timezone: config.schedule.timezone,
  });
  scheduler.start();

  const http = await startHttpServer({
    host: config.http.host,
    port: config.http.port,
    log,
    mcp: delegation?.http,
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
      // Each backend's part, listed under its section (several OpenCode servers make a list).
      const parts: Record<string, BackendHealth[]> = {};
      for (const b of backends) {
        for (const h of [(await b.health?.()) ?? []].flat()) (parts[h.section ?? h.name] ??= []).push(h);
      }
      const sections = Object.fromEntries(Object.entries(parts).map(([k, list]) => [k, list.map(({ name: _n, section: _s, ...rest }) => rest)]));
      return {
        ok: matrixOk && dbOk && Object.values(parts).flat().every((h) => h.ok),
        matrix: { ok: matrixOk, userId, lastSyncAgeMs: syncAgeMs, error: client.lastSyncError ?? null },
        ...sections,
        database: { ok: dbOk },
        activeTurns: backends.reduce((n, b) => n + (b.activeTurns?.() ?? 0), 0),
      };
    },
  });
  await delegation?.start(http.port);
  log.info({ userId, httpPort: http.port }, "bot ready");
  // What a start does not need but the first message does, loaded while nothing waits for it.
  setImmediate(() => preloadMarkdown());

  let stopping: Promise<void> | undefined;
  return {
    userId,
    httpPort: http.port,
    stop: () =>
      (stopping ??= (async () => {
        log.info("stopping: no new work, finishing replies in flight");
        client.stop();
        await intake.drain();
        typing.stop();
        await scheduler.stop();
        delegation?.stop();
        await Promise.all(backends.map((b) => b.stop?.()));
        // What is owed to people goes out before the database closes: final texts and pushes
        // (one may be waiting out a 429). Past the limit it is logged; the turn's row says
        // how it ended, and a reply still running is finished by the next start.
        const owed = await engine.settle(10_000);
        if (owed > 0) log.warn({ owed }, "stopping with final replies or pushes still unsent");
        await http.close();
        db.close();
        log.info("stopped");
      })()),
  };
}
