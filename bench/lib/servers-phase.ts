// The "servers" phase: one bot, three real `opencode serve` processes (the stack's as `default`,
// two more started here with their own workspace and state, the same scripted model), 1,000
// rooms bound round-robin with `!oc server <name>`. (a) 20 sessions streaming at once on each
// server; (b) again, with longer answers, and one server killed (SIGKILL) mid-stream: when its
// threads are told, whether the other two servers' turns notice anything, and what its turns
// become once it is started again on the same port and state directory.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import Database from "better-sqlite3";
import { MatrixTestUser, type MatrixEvent } from "../../test/harness/matrix-user.ts";
import { startTestOpencode, type TestOpencode } from "../../test/harness/opencode.ts";
import type { Stack } from "../../test/harness/stack.ts";
import type { RegisteredUser } from "../../test/harness/synapse.ts";
import { ProxyProcess, type ProxyStats } from "../counting-proxy.ts";
import { BenchBot, RssSampler, type BenchBotOptions, type LoopLag } from "./bot.ts";
import { CpuMeter, type CpuUse } from "./cpu.ts";
import { OpencodeEventRecorder } from "./oc-events.ts";
import { splitFooter, versionsOf, waitForAck, waitForFinal, waitForReply, type ReplyWatch } from "./replies.ts";
import { round, summarize, type Summary } from "./stats.ts";

export interface ServersConfig {
  /** Rooms created and bound round-robin (default 1000). */
  rooms: number;
  /** Sessions streaming at once on each server (default 20). */
  perServer: number;
  /** Words of each answer in the burst (a), and in the outage round (b). */
  words: number;
  outageWords: number;
  /** Room creations (and binding commands) in flight at once. */
  concurrency: number;
  /** A final later than this after its session went idle is late; not final after `timeoutMs`: lost. */
  lateMs: number;
  timeoutMs: number;
  /** The target for telling a dead server's threads. */
  noticeTargetMs: number;
}

export interface ServersContext {
  cfg: ServersConfig;
  stack: Stack;
  /** The benchmark's subscription to the stack's OpenCode (the server `default`). */
  recorder: OpencodeEventRecorder;
  workDir: string;
  stateDir: string;
  logDir: string;
  reg: (name: string) => Promise<RegisteredUser>;
  botOptions: (over: Partial<BenchBotOptions> & Pick<BenchBotOptions, "homeserverUrl" | "accessToken" | "allowedUsers" | "databasePath">) => BenchBotOptions;
  say: (line: string) => void;
  markLoad: (phase: string, at: "start" | "end") => void;
  cleanups: Array<() => Promise<unknown>>;
}

export interface ServerTurns {
  server: string;
  n: number;
  lost: number;
  late: number;
  ackMs: Summary;
  finishMs: Summary;
  totalMs: Summary;
  errors: Record<string, number>;
  ackSplitMs: { bot: Summary; put: Summary; sync: Summary };
  finishSplitMs: { bot: Summary; put: Summary; sync: Summary };
}

interface RoundCommon {
  sessions: number;
  words: number;
  wallMs: number;
  rssPeakMb: number;
  loopLag: LoopLag;
  cpu: CpuUse;
  requests: { total: number; rateLimited: number; perReply: number; byRoute: Record<string, number> };
}

export interface ServersPhase {
  rooms: number;
  servers: string[];
  /** Rooms per server (rooms of `default` are not bound: it is the rooms' default). */
  roomsPerServer: Record<string, number>;
  concurrency: number;
  /** Creating the rooms until the bot had joined the last one. */
  createMs: number;
  /** Binding the rooms of the other servers with `!oc server <name>`; each command → the bot's answer seen. */
  bindMs: number;
  bindCommandMs: Summary;
  bindFailures: number;
  /** The bot's homeserver requests while the rooms were created and bound (syncs included). */
  setupRequests: { total: number; rateLimited: number; perRoom: number; byRoute: Record<string, number> };
  /** CPU seconds while the rooms were created and bound. */
  setupCpu: CpuUse;
  idleRssMb: number;
  idleLoopLag: LoopLag;
  burst: RoundCommon & { lost: number; late: number; perServer: ServerTurns[] };
  outage: RoundCommon & {
    victim: string;
    /** Sessions on the killed server. */
    perVictim: number;
    /** Prompts sent → SIGKILL. */
    killAfterMs: number;
    /** The victim's sessions still streaming (busy in OpenCode) at the kill, and the words of each reply Alice had seen. */
    victimBusyAtKill: number;
    /** This round's sessions on the victim that OpenCode had already finished at the kill, and prompts it had not started. */
    victimDoneAtKill: number;
    /** Of the busy ones, those that had streamed text (the others were busy before their first word). */
    victimTextAtKill: number;
    victimNotStartedAtKill: number;
    victimWordsAtKill: Summary;
    /** Words the victim's OpenCode had emitted per session at the kill. */
    victimEmittedAtKill: Summary;
    /** Per victim thread: the kill → the "Lost the connection" notice in that thread seen by Alice. */
    noticeMs: Summary;
    /** The kill → the bot logs the server disconnected; the kill → each notice's PUT reaches the proxy; its PUT; → Alice's sync. */
    noticeSplitMs: { detect: number; toPut: Summary; put: Summary; sync: Summary };
    noticesSeen: number;
    noticesWithinTarget: number;
    /** Notices in rooms of the other servers (should be none). */
    falseNotices: number;
    others: ServerTurns[];
    othersLost: number;
    othersLate: number;
    /** The kill → the restarted server answering again. */
    downMs: number;
    /** Restart (same port, same state dir) → ready. */
    restartMs: number;
    /** From the server ready again: per victim thread, the "Reconnected" notice and the final version (with footer). */
    reconnectNoticeMs: Summary;
    reconnectNotices: number;
    victimFinalMs: Summary;
    victimFinals: number;
    victimFinishedBeforeKill: number;
    victimInterruptedNote: number;
    victimComplete: number;
    /** Finals with fewer words than Alice had already seen streaming before the kill. */
    victimFinalShorterThanSeen: number;
    /** Words in the victim threads' finals. */
    victimFinalWords: Summary;
    /** Per victim thread: OpenCode's words at the kill, Alice's, the notice, the final. */
    victimThreads: Array<{ emittedAtKill: number; shownAtKill: number; busyAtKill: boolean; noticeMs: number | null; reconnectMs: number | null; finalAfterBackMs: number | null; finalWords: number | null; interrupted: boolean; finalStart: string | null }>;
    /** Victim threads with no final 60 s after the server came back: what the bot's database, OpenCode and Alice show. */
    victimUnfinished: Array<Record<string, unknown>>;
    /** The bot's log of its connection to the victim from the kill on (ms after the kill): why reconnecting took what it took. */
    botConnectionLog: Array<{ atMs: number; msg: string; state?: unknown; attempt?: unknown; delayMs?: unknown; error?: unknown }>;
    /** New prompts in rooms of the victim once it is back. */
    afterReturn: { prompts: number; ok: number; totalMs: Summary };
  };
  restartWithRoomsMs: number;
  restartWithRoomsCpuMs: number;
  botWarnings: Record<string, number>;
}

const expectedWords = (n: number): string => Array.from({ length: n }, (_, i) => `word${i + 1}`).join(" ");
const wordCount = (body: string): number => body.match(/\bword\d+\b/g)?.length ?? 0;

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  }));
  return out;
}

/** [[a1, a2], [b1, b2]] → [a1, b1, a2, b2]: the prompts go out one per server in turn. */
function interleave<T>(lists: T[][]): T[] {
  const out: T[] = [];
  for (let i = 0; i < Math.max(0, ...lists.map((l) => l.length)); i++) for (const l of lists) if (i < l.length) out.push(l[i] as T);
  return out;
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

const rel = (e: MatrixEvent): { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } =>
  (e.content["m.relates_to"] ?? {}) as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
const bodyOf = (e: MatrixEvent): string => String((e.content["m.new_content"] as { body?: unknown } | undefined)?.body ?? e.content.body ?? "");

/** One prompt's answer: ack, first reply, final; the session's idle time from its server's event stream. */
interface Turn {
  server: string;
  room: string;
  root?: string;
  sentAt: number;
  ok: boolean;
  error?: string;
  ackMs?: number;
  putDoneAt?: number;
  ackId?: string;
  ackAt?: number;
  replyId?: string;
  replyAt?: number;
  finalAt?: number;
  finalBody?: string;
  finishMs?: number;
  totalMs?: number;
  sessionId?: string;
  idleAt?: number;
  finalId?: string;
  /** Alice's PUT answered → the bot's PUT at the proxy; its PUT; answer → Alice's sync (ack: the 👀 or reply; finish: from idle). */
  ackSplit?: Split;
  finishSplit?: Split;
}

interface Split { bot: number; put: number; sync: number }

function threadSession(dbPath: string, root: string): string | undefined {
  return dbRow<{ session_id: string }>(dbPath, "SELECT session_id FROM threads WHERE root_event_id = ?", root)?.session_id;
}

/** One row from the bot's database (read-only); undefined when there is none or the file is gone. */
function dbRow<T>(dbPath: string, sql: string, ...params: unknown[]): T | undefined {
  try {
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql).get(...params) as T | undefined;
    } finally {
      db.close();
    }
  } catch {
    return undefined;
  }
}

function turnSummary(server: string, turns: Turn[], lateMs: number): ServerTurns {
  const lost = turns.filter((t) => !t.ok);
  const has = (k: "ackMs" | "finishMs" | "totalMs"): number[] => turns.flatMap((t) => (t[k] === undefined ? [] : [t[k]]));
  return {
    server,
    n: turns.length,
    lost: lost.length,
    late: turns.filter((t) => t.ok && t.finishMs !== undefined && t.finishMs > lateMs).length,
    ackMs: summarize(has("ackMs")),
    finishMs: summarize(has("finishMs")),
    totalMs: summarize(has("totalMs")),
    errors: countBy(lost.map((t) => t.error ?? "?")),
    ackSplitMs: splitSummary(turns.flatMap((t) => (t.ackSplit ? [t.ackSplit] : []))),
    finishSplitMs: splitSummary(turns.flatMap((t) => (t.finishSplit ? [t.finishSplit] : []))),
  };
}

function splitSummary(xs: Split[]): { bot: Summary; put: Summary; sync: Summary } {
  return { bot: summarize(xs.map((x) => x.bot)), put: summarize(xs.map((x) => x.put)), sync: summarize(xs.map((x) => x.sync)) };
}

export async function runServersPhase(ctx: ServersContext): Promise<ServersPhase> {
  const { cfg, stack, say } = ctx;
  const dir = join(ctx.workDir, "servers");
  mkdirSync(dir, { recursive: true });
  const names = ["default", "second", "third"] as const;
  const victim = "third";

  // Two more real OpenCode servers, each with its own workspace and state, the same scripted model.
  say(`servers: starting two more opencode serve (${names.slice(1).join(", ")})`);
  const extra = new Map<string, { oc: TestOpencode; ws: string }>();
  await Promise.all(names.slice(1).map(async (name) => {
    const ws = join(dir, `ws-${name}`);
    const oc = await startTestOpencode({ workspaceDir: ws, stateDir: join(dir, `oc-${name}`), modelBaseUrl: stack.info.model.baseUrl });
    extra.set(name, { oc, ws });
  }));
  // A cleanup that hangs must not hang the benchmark: each gets 15 s.
  const cleanup = (what: string, fn: () => Promise<unknown>): void => void ctx.cleanups.push(async () => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      fn().catch(() => undefined),
      new Promise<void>((resolve) => (timer = setTimeout(() => resolve(say(`  cleanup: ${what} did not finish within 15 s; going on`)), 15_000))),
    ]);
    clearTimeout(timer);
  });
  cleanup("stopping the two OpenCode servers", () => Promise.allSettled([...extra.values()].map((x) => x.oc.stop())));
  const recorders = new Map<string, OpencodeEventRecorder>([["default", ctx.recorder]]);
  for (const [name, x] of extra) {
    const r = new OpencodeEventRecorder(x.oc.url, x.ws);
    await r.start({ reconnect: true });
    recorders.set(name, r);
    cleanup(`stopping the event recorder of ${name}`, () => r.stop());
  }
  const ocOf = (name: string): TestOpencode => (name === "default" ? stack.opencode : (extra.get(name) as { oc: TestOpencode }).oc);

  const configFile = join(dir, "bot-config.yaml");
  writeFileSync(configFile, [
    "opencode:",
    "  servers:",
    ...[...extra].flatMap(([name, x]) => [`    ${name}:`, `      url: ${x.oc.url}`, `      projectRoots: [${x.ws}]`]),
    "",
  ].join("\n"));

  const aliceAccount = await ctx.reg("alice-servers");
  const al = new MatrixTestUser(stack.info.synapse.baseUrl, aliceAccount);
  await al.startSync();
  cleanup("stopping Alice's sync", () => al.stopSync());
  const botAccount = await ctx.reg("servers-bot");
  const botUser = botAccount.userId;
  const proxy = await ProxyProcess.start(stack.info.synapse.baseUrl);
  cleanup("stopping the proxy", () => proxy.stop());
  const dbPath = join(ctx.stateDir, "servers-bot.db");
  const opts = ctx.botOptions({
    homeserverUrl: proxy.url, accessToken: botAccount.accessToken, allowedUsers: [al.userId], databasePath: dbPath,
  });
  opts.extraEnv = { ...opts.extraEnv, BOT_CONFIG: configFile };
  let bot = await BenchBot.start(opts);

  // 1,000 rooms: Alice creates each (so she is its admin), the bot joins.
  await proxy.reset();
  const setupCpu = new CpuMeter({ bot: bot.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid });
  ctx.markLoad("servers-rooms", "start");
  say(`  creating ${cfg.rooms} rooms, ${cfg.concurrency} at a time`);
  let t0 = performance.now();
  let made = 0;
  const rooms = await mapLimit(Array.from({ length: cfg.rooms }, (_, i) => i), cfg.concurrency, async (i) => {
    const room = await al.createRoom({ name: `servers ${i}`, invite: [botUser] });
    await al.waitForRoomEvent({
      roomId: room, type: "m.room.member", timeoutMs: 180_000, description: "the bot joining",
      match: (e) => e.state_key === botUser && e.content.membership === "join",
    });
    if (++made % 250 === 0) say(`    ${made} rooms (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    return room;
  });
  const createMs = performance.now() - t0;
  say(`  ${rooms.length} rooms in ${(createMs / 1000).toFixed(1)} s`);

  // Round-robin: room i on names[i % 3]; rooms of `default` stay unbound (it is the rooms' default).
  const serverOfRoom = (i: number): string => names[i % names.length] as string;
  const roomsPerServer = countBy(rooms.map((_, i) => serverOfRoom(i)));
  t0 = performance.now();
  const toBind = rooms.flatMap((room, i) => (serverOfRoom(i) === "default" ? [] : [{ room, name: serverOfRoom(i) }]));
  const bindTimes = await mapLimit(toBind, cfg.concurrency, async ({ room, name }) => {
    const s = performance.now();
    try {
      const id = await al.sendText(room, `!oc server ${name}`);
      const answer = await al.waitForRoomEvent({
        roomId: room, sender: botUser, type: "m.room.message", timeoutMs: 60_000, description: `the answer to !oc server ${name}`,
        match: (e) => rel(e)["m.in_reply_to"]?.event_id === id && rel(e).rel_type !== "m.replace",
      });
      if (!String(answer.content.body).startsWith("🔀 New sessions in this room now start on the OpenCode server")) {
        say(`    binding ${room} to ${name}: ${String(answer.content.body).slice(0, 120)}`);
        return undefined;
      }
      return performance.now() - s;
    } catch (err) {
      say(`    binding ${room} to ${name} failed: ${String(err).split("\n")[0]}`);
      return undefined;
    }
  });
  const bindMs = performance.now() - t0;
  const bindFailures = bindTimes.filter((x) => x === undefined).length;
  ctx.markLoad("servers-rooms", "end");
  const setup = await proxy.reset();
  const setupCpuUse = setupCpu.stop();
  say(`  bound ${toBind.length - bindFailures}/${toBind.length} rooms in ${(bindMs / 1000).toFixed(1)} s (${bindFailures} failed)`);

  await sleep(3000);
  await bot.loopLag();
  await sleep(5000);
  const idleLoopLag = await bot.loopLag();
  const idleRssMb = round(bot.memory().rssMb);
  say(`  idle with ${rooms.length} rooms: RSS ${idleRssMb} MB, loop lag p99 ${round(idleLoopLag.lagP99Ms)} ms`);

  const pids = (): Record<string, number> => ({
    bot: bot.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid,
    ...Object.fromEntries(names.map((n) => [`opencode-${n}`, ocOf(n).pid])),
  });
  // Rooms not used yet, per server, in creation order.
  const unused = new Map<string, string[]>(names.map((n) => [n, rooms.filter((_, i) => serverOfRoom(i) === n)]));
  const takeRooms = (server: string, n: number): string[] => (unused.get(server) as string[]).splice(0, n);

  /** Fills `t` as the answer progresses (a caller may read it before the promise settles). */
  async function observe(
    server: string, room: string, words: number,
    opts: { exact: boolean; onRoot?: (root: string) => void; onReply?: (replyId: string) => void; timeoutMs?: number },
    t: Turn = { server, room, sentAt: 0, ok: false },
  ): Promise<Turn> {
    const timeoutMs = opts.timeoutMs ?? cfg.timeoutMs;
    t.sentAt = performance.now();
    try {
      const root = await al.sendText(room, `!oc long ${words}`);
      t.putDoneAt = performance.now();
      t.root = root;
      opts.onRoot?.(root);
      const w: ReplyWatch = { room, root, sentAt: t.sentAt };
      const ack = await waitForAck(al, botUser, w, timeoutMs);
      t.ackMs = ack.receivedAt - t.sentAt;
      t.ackId = ack.event_id;
      t.ackAt = ack.receivedAt;
      const reply = await waitForReply(al, botUser, w, timeoutMs);
      t.replyId = reply.event_id;
      t.replyAt = reply.receivedAt;
      opts.onReply?.(reply.event_id);
      const final = await waitForFinal(al, botUser, room, reply.event_id, timeoutMs);
      t.finalAt = final.receivedAt;
      t.finalId = final.event_id;
      t.totalMs = final.receivedAt - t.sentAt;
      const versions = versionsOf(al, botUser, room, reply.event_id);
      t.finalBody = versions.findLast((v) => v.final)?.body ?? "";
      t.sessionId = threadSession(dbPath, root);
      const idleAt = t.sessionId ? recorders.get(server)?.sessions.get(t.sessionId)?.idleAt : undefined;
      if (idleAt !== undefined) t.finishMs = final.receivedAt - idleAt;
      t.idleAt = idleAt;
      const last = versions.at(-1);
      t.ok = !opts.exact || (last !== undefined && last.final && splitFooter(last.body).text === expectedWords(words));
      if (!t.ok) t.error = `final text differs: ${JSON.stringify((last?.body ?? "").slice(0, 100))}`;
    } catch (err) {
      t.sessionId = t.root ? threadSession(dbPath, t.root) : undefined;
      const marks = t.sessionId ? recorders.get(server)?.sessions.get(t.sessionId) : undefined;
      const state = !t.sessionId ? "no session" : marks?.idleAt ? "session idle in OpenCode" : marks?.busyAt ? "session still busy in OpenCode" : "session never busy";
      t.error = `${(String(err).split("\n")[0] ?? "").replace(/ in ![^ ]+.*$/, "").replace(/^Error: @[^ ]+ /, "")}; ${state}`;
    }
    return t;
  }

  const epoch = (perfNow: number): number => performance.timeOrigin + perfNow;
  const wsOf = (name: string): string => (name === "default" ? stack.info.workspaceDir : (extra.get(name) as { ws: string }).ws);
  /** What became of a turn that never showed a final: the bot's rows, OpenCode's messages, Alice's last sight. */
  async function diagnose(t: Turn): Promise<Record<string, unknown>> {
    const turn = t.root ? dbRow<Record<string, unknown>>(dbPath, "SELECT id, status, session_id, prompt_message_id, reply_event_id, started_at, finished_at FROM turns WHERE prompt_event_id = ? ORDER BY id DESC LIMIT 1", t.root) : undefined;
    const queued = t.root ? dbRow<Record<string, unknown>>(dbPath, "SELECT id, queue_key, queued_at FROM turn_queue WHERE prompt_event_id = ?", t.root) : undefined;
    const inbox = t.root ? dbRow<Record<string, unknown>>(dbPath, "SELECT status FROM inbox WHERE event_id = ?", t.root) : undefined;
    const mine = al.seenEvents(t.room).filter((e) => e.sender === botUser && e.type === "m.room.message");
    const sessionId = (turn?.session_id as string | undefined) ?? (t.root ? threadSession(dbPath, t.root) : undefined);
    let opencode: unknown;
    if (sessionId) {
      try {
        const c = createOpencodeClient({ baseUrl: ocOf(t.server).url, directory: wsOf(t.server) });
        const msgs = (await c.session.messages({ sessionID: sessionId }, { signal: AbortSignal.timeout(10_000) })).data ?? [];
        opencode = msgs.map((m) => ({
          role: m.info.role, id: m.info.id,
          ...(m.info.role === "assistant" ? { completed: m.info.time.completed !== undefined, finish: m.info.finish, error: m.info.error?.name } : {}),
          words: m.parts.reduce((a, p) => a + (p.type === "text" ? wordCount(p.text) : 0), 0),
        }));
      } catch (err) {
        opencode = `could not ask: ${String(err)}`;
      }
    }
    return {
      ack: t.ackId !== undefined, reply: t.replyId !== undefined, sessionId, turn, queued, inbox,
      botMessages: mine.length, lastSeen: mine.length ? bodyOf(mine.at(-1) as MatrixEvent).slice(0, 160) : null, opencode,
    };
  }

  const roundCommon = async (turns: Turn[], words: number, wallMs: number, rss: RssSampler, cpu: CpuMeter): Promise<RoundCommon> => {
    const sessions = turns.length;
    const cpuUse = cpu.stop();
    const loopLag = await bot.loopLag();
    const peak = rss.stop();
    await sleep(1000);
    // Split the ack and the finish at the bot's PUTs as the proxy saw them.
    const sends = new Map((await proxy.sends()).flatMap((r) => (r.eventId ? [[r.eventId, r] as const] : [])));
    const split = (from: number, eventId: string | undefined, seenAt: number | undefined): Split | undefined => {
      const r = eventId ? sends.get(eventId) : undefined;
      return r && seenAt !== undefined ? { bot: r.start - epoch(from), put: r.end - r.start, sync: epoch(seenAt) - r.end } : undefined;
    };
    for (const t of turns) {
      if (t.putDoneAt !== undefined) t.ackSplit = split(t.putDoneAt, t.ackId, t.ackAt);
      if (t.idleAt !== undefined) t.finishSplit = split(t.idleAt, t.finalId, t.finalAt);
    }
    const counts: ProxyStats = await proxy.reset();
    return {
      sessions, words, wallMs: round(wallMs, 0), rssPeakMb: round(peak), loopLag, cpu: cpuUse,
      requests: { total: counts.requests, rateLimited: counts.rateLimited, perReply: round(counts.requests / sessions), byRoute: counts.byRoute },
    };
  };

  // (a) perServer sessions at once on each server.
  const logFrom = bot.bot.lines.length;
  await proxy.reset();
  ctx.markLoad("servers-burst", "start");
  say(`  (a) ${cfg.perServer} sessions at once on each of the ${names.length} servers, ${cfg.words} words each`);
  let rss = new RssSampler(bot.pid);
  let cpu = new CpuMeter(pids());
  t0 = performance.now();
  const burstTurns = await Promise.all(interleave(names.map((n) => takeRooms(n, cfg.perServer).map((room) => ({ n, room }))))
    .map(({ n, room }) => observe(n, room, cfg.words, { exact: true })));
  const burstWall = performance.now() - t0;
  const burstCommon = await roundCommon(burstTurns, cfg.words, burstWall, rss, cpu);
  ctx.markLoad("servers-burst", "end");
  const perServer = names.map((n) => turnSummary(n, burstTurns.filter((t) => t.server === n), cfg.lateMs));
  const burst = { ...burstCommon, lost: perServer.reduce((a, s) => a + s.lost, 0), late: perServer.reduce((a, s) => a + s.late, 0), perServer };
  say(`    wall ${(burstWall / 1000).toFixed(1)} s, lost ${burst.lost}, late ${burst.late}, RSS peak ${burst.rssPeakMb} MB, loop lag p99 ${round(burst.loopLag.lagP99Ms)} ms`);
  for (const s of perServer) say(`    ${s.server}: ack p50/p99 ${s.ackMs.p50}/${s.ackMs.p99} ms, finish ${s.finishMs.p50}/${s.finishMs.p99} ms, lost ${s.lost}, late ${s.late}`);

  // (b) the same with longer answers; SIGKILL one server mid-stream, start it again later.
  await sleep(2000);
  await bot.loopLag();
  await proxy.reset();
  ctx.markLoad("servers-outage", "start");
  say(`  (b) ${cfg.perServer} sessions per server, ${cfg.outageWords} words each; \`${victim}\` killed mid-stream`);
  rss = new RssSampler(bot.pid);
  cpu = new CpuMeter(pids());
  const victimRooms = takeRooms(victim, cfg.perServer);
  const replies = new Map<string, string>(); // victim room → reply id
  const roots = new Map<string, string>(); // victim room → prompt (thread root)
  t0 = performance.now();
  // Filled in place: read once the victim's threads had their chance after its return.
  const victimTurns: Turn[] = victimRooms.map((room) => ({ server: victim, room, sentAt: 0, ok: false }));
  const others = names.filter((n) => n !== victim);
  const otherTurnsIn: Turn[] = others.flatMap((n) => takeRooms(n, cfg.perServer).map((room) => ({ server: n, room, sentAt: 0, ok: false })));
  // Sent interleaved (one per server in turn), as in (a).
  const pending = new Map<Turn, Promise<Turn>>();
  for (const t of interleave(names.map((n) => (n === victim ? victimTurns : otherTurnsIn.filter((o) => o.server === n))))) {
    pending.set(t, t.server === victim
      ? observe(victim, t.room, cfg.outageWords, {
        exact: false, timeoutMs: 120_000, onRoot: (root) => roots.set(t.room, root), onReply: (id) => replies.set(t.room, id),
      }, t)
      : observe(t.server, t.room, cfg.outageWords, { exact: true }, t));
  }
  const victimPending = victimTurns.map((t) => pending.get(t) as Promise<Turn>);
  const otherPending = Promise.all(otherTurnsIn.map((t) => pending.get(t) as Promise<Turn>));
  // Kill mid-stream, judged by the victim's OpenCode (its event stream as the benchmark sees it;
  // this round's sessions are those that turned busy after the prompts went out): as soon as all
  // of them stream at once (each has emitted ≥ 10 % of its answer, none has finished), or when
  // the first to start has emitted 75 % of its answer (it would be the first to finish), or after
  // 30 s. The scripted model sends an answer in at most 200 chunks (4 s at 20 ms a chunk, longer
  // on a busy machine) and the bot takes 20 prompts over a few seconds, so not always all are
  // mid-stream at the kill: the report says how many were busy, done, not started.
  const victimOc = ocOf(victim);
  const victimRec = recorders.get(victim) as OpencodeEventRecorder;
  const emittedBy = (sessionId: string): number => {
    let n = 0;
    for (const part of victimRec.parts.values()) if (part.sessionId === sessionId && part.field === "text") n += wordCount(part.text);
    return n;
  };
  const roundSessions = (): Array<[string, { busyAt?: number; idleAt?: number }]> =>
    [...victimRec.sessions].filter(([, m]) => m.busyAt !== undefined && m.busyAt >= t0).sort(([, a], [, b]) => (a.busyAt ?? 0) - (b.busyAt ?? 0));
  const wordsSeen = (room: string): number => {
    const id = replies.get(room);
    return id ? Math.max(0, ...versionsOf(al, botUser, room, id).map((v) => wordCount(v.body))) : 0;
  };
  const deadline = performance.now() + 30_000;
  for (;;) {
    const ss = roundSessions();
    if (ss.length >= victimRooms.length && ss.every(([id, m]) => m.idleAt === undefined && emittedBy(id) >= 0.1 * cfg.outageWords)) break;
    const first = ss[0];
    if (first && emittedBy(first[0]) >= 0.75 * cfg.outageWords) break;
    if (performance.now() > deadline) break;
    await sleep(50);
  }
  const killedAt = performance.now();
  victimOc.kill("SIGKILL");
  const atKill = new Map(roundSessions().map(([id, m]) => [id, { emitted: emittedBy(id), busy: m.idleAt === undefined }]));
  const wordsAtKill = victimRooms.map(wordsSeen);
  const busyNow = [...atKill.values()].filter((x) => x.busy);
  say(`    killed \`${victim}\` ${((killedAt - t0) / 1000).toFixed(1)} s after the prompts; ${busyNow.length} of its sessions busy (${busyNow.filter((x) => x.emitted > 0).length} with text streamed), ${atKill.size - busyNow.length} done, ${victimRooms.length - atKill.size} not started`);

  // Each victim thread: the "Lost the connection" notice, in that thread.
  const noticeTimes = await Promise.all(victimRooms.map(async (room) => {
    const root = roots.get(room);
    try {
      const e = await al.waitForRoomEvent({
        roomId: room, sender: botUser, type: "m.room.message", timeoutMs: 30_000, description: "the outage notice",
        match: (ev) => rel(ev).rel_type === "m.thread" && rel(ev).event_id === root && bodyOf(ev).startsWith(`⚠️ Lost the connection to the OpenCode server \`${victim}\``),
      });
      return { ms: e.receivedAt - killedAt, eventId: e.event_id, seenAt: e.receivedAt };
    } catch {
      return undefined;
    }
  }));
  const noticeList = noticeTimes.flatMap((x) => (x === undefined ? [] : [x.ms]));
  // Where the time went: the kill → the bot's "disconnected" log line → its notice PUT at the proxy → Alice's sync.
  const lostLine = bot.logLinesSince(0, (l) => l.msg === "OpenCode connection" && l.server === victim && l.state === "disconnected" && Number(l.time) >= epoch(killedAt) - 5)[0];
  const detectMs = lostLine ? Number(lostLine.time) - epoch(killedAt) : Number.NaN;
  const sends = new Map((await proxy.sends()).flatMap((r) => (r.eventId ? [[r.eventId, r] as const] : [])));
  const noticeSplits = noticeTimes.flatMap((x) => {
    const r = x ? sends.get(x.eventId) : undefined;
    return x && r ? [{ toPut: r.start - epoch(killedAt), put: r.end - r.start, sync: epoch(x.seenAt) - r.end }] : [];
  });
  say(`    notices: ${noticeList.length}/${victimRooms.length}, p50 ${summarize(noticeList).p50} ms, max ${summarize(noticeList).max} ms`);
  const otherTurns = await otherPending;
  const otherRooms = new Set(otherTurns.map((t) => t.room));
  const falseNotices = [...otherRooms].flatMap((room) => al.seenEvents(room))
    .filter((e) => e.sender === botUser && e.receivedAt >= killedAt && /^(⚠️ Lost the connection|✅ Reconnected)/.test(bodyOf(e))).length;
  for (const n of others) {
    const s = turnSummary(n, otherTurns.filter((t) => t.server === n), cfg.lateMs);
    say(`    ${s.server}: finish p50/p99 ${s.finishMs.p50}/${s.finishMs.p99} ms, lost ${s.lost}, late ${s.late}`);
  }

  // Down at least 10 s (past the notices and the bot's quick retries), then the same server again.
  await sleep(Math.max(0, killedAt + 10_000 - performance.now()));
  const r0 = performance.now();
  await victimOc.restart();
  const backAt = performance.now();
  const restartMs = backAt - r0;
  const downMs = backAt - killedAt;
  say(`    \`${victim}\` back after ${(downMs / 1000).toFixed(1)} s (restart ${(restartMs / 1000).toFixed(1)} s)`);
  const reconnectTimes = await Promise.all(victimRooms.map(async (room) => {
    const root = roots.get(room);
    try {
      const e = await al.waitForRoomEvent({
        roomId: room, sender: botUser, type: "m.room.message", timeoutMs: 60_000, description: "the reconnect notice",
        match: (ev) => rel(ev).rel_type === "m.thread" && rel(ev).event_id === root && bodyOf(ev).startsWith(`✅ Reconnected to the OpenCode server \`${victim}\``),
      });
      return e.receivedAt - backAt;
    } catch {
      return undefined;
    }
  }));
  // The victim's turns: final, or given up 60 s after the server came back.
  await Promise.race([Promise.all(victimPending), sleep(Math.max(0, backAt + 60_000 - performance.now()))]);
  const sessionOfRoom = victimRooms.map((room) => {
    const root = roots.get(room);
    return root ? threadSession(dbPath, root) : undefined;
  });
  const emittedAtKill = sessionOfRoom.map((id) => (id ? atKill.get(id)?.emitted ?? 0 : 0));
  const busyAtKill = sessionOfRoom.map((id) => (id ? atKill.get(id)?.busy ?? false : false));
  const victimBusyAtKill = busyAtKill.filter(Boolean).length;
  const unfinished = await Promise.all(victimTurns.filter((t) => t.finalAt === undefined).map(async (t) => ({
    room: t.room, root: t.root, ...(await diagnose(t)),
  })));
  const beforeKill = victimTurns.filter((t) => t.finalAt !== undefined && t.finalAt < killedAt).length;
  const afterBack = victimTurns.flatMap((t) => (t.finalAt !== undefined && t.finalAt >= backAt ? [t.finalAt - backAt] : []));
  const finals = victimTurns.filter((t) => t.finalBody !== undefined);
  const interrupted = finals.filter((t) => /stopped before it was complete/.test(t.finalBody ?? "")).length;
  const complete = finals.filter((t) => splitFooter(t.finalBody ?? "").text === expectedWords(cfg.outageWords)).length;
  // The most words any streamed (not final) version showed, against the final's.
  const maxLive = victimTurns.map((t) => (t.replyId ? Math.max(0, ...versionsOf(al, botUser, t.room, t.replyId).filter((v) => !v.final).map((v) => wordCount(v.body))) : 0));
  const shorter = victimTurns.filter((t, i) => t.finalBody !== undefined && wordCount(t.finalBody) < (maxLive[i] ?? 0)).length;
  const finalWords = victimTurns.flatMap((t) => (t.finalBody === undefined ? [] : [wordCount(t.finalBody)]));
  const reconnectList = reconnectTimes.flatMap((x) => (x === undefined ? [] : [x]));
  say(`    after the return: ${reconnectList.length} reconnect notices, ${finals.length}/${victimRooms.length} finals (${beforeKill} before the kill), ${interrupted} marked interrupted, ${complete} complete, ${shorter} shorter than seen live`);

  // A few new prompts on the server that came back.
  const after = await Promise.all(takeRooms(victim, 3).map((room) => observe(victim, room, cfg.words, { exact: true, timeoutMs: 60_000 })));
  const outageWall = performance.now() - t0;
  const outageCommon = await roundCommon([...victimTurns, ...otherTurns], cfg.outageWords, outageWall, rss, cpu);
  outageCommon.sessions = victimTurns.length + otherTurns.length;
  ctx.markLoad("servers-outage", "end");
  const othersSummary = others.map((n) => turnSummary(n, otherTurns.filter((t) => t.server === n), cfg.lateMs));
  const outage: ServersPhase["outage"] = {
    ...outageCommon,
    victim,
    perVictim: victimRooms.length,
    killAfterMs: round(killedAt - t0, 0),
    victimBusyAtKill,
    victimDoneAtKill: [...atKill.values()].filter((x) => !x.busy).length,
    victimTextAtKill: busyNow.filter((x) => x.emitted > 0).length,
    victimNotStartedAtKill: victimRooms.length - atKill.size,
    victimWordsAtKill: summarize(wordsAtKill),
    victimEmittedAtKill: summarize(emittedAtKill),
    noticeMs: summarize(noticeList),
    noticeSplitMs: {
      detect: round(detectMs, 0),
      toPut: summarize(noticeSplits.map((x) => x.toPut)),
      put: summarize(noticeSplits.map((x) => x.put)),
      sync: summarize(noticeSplits.map((x) => x.sync)),
    },
    noticesSeen: noticeList.length,
    noticesWithinTarget: noticeList.filter((x) => x <= cfg.noticeTargetMs).length,
    falseNotices,
    others: othersSummary,
    othersLost: othersSummary.reduce((a, s) => a + s.lost, 0),
    othersLate: othersSummary.reduce((a, s) => a + s.late, 0),
    downMs: round(downMs, 0),
    restartMs: round(restartMs, 0),
    reconnectNoticeMs: summarize(reconnectList),
    reconnectNotices: reconnectList.length,
    victimFinalMs: summarize(afterBack),
    victimFinals: finals.length,
    victimFinishedBeforeKill: beforeKill,
    victimInterruptedNote: interrupted,
    victimComplete: complete,
    victimFinalShorterThanSeen: shorter,
    victimFinalWords: summarize(finalWords),
    victimThreads: victimTurns.map((t, i) => ({
      emittedAtKill: emittedAtKill[i] ?? 0,
      shownAtKill: wordsAtKill[i] ?? 0,
      busyAtKill: busyAtKill[i] ?? false,
      noticeMs: noticeTimes[i] ? round(noticeTimes[i].ms, 0) : null,
      reconnectMs: reconnectTimes[i] === undefined ? null : round(reconnectTimes[i], 0),
      finalAfterBackMs: t.finalAt === undefined ? null : round(t.finalAt - backAt, 0),
      finalWords: t.finalBody === undefined ? null : wordCount(t.finalBody),
      interrupted: /stopped before it was complete/.test(t.finalBody ?? ""),
      finalStart: t.finalBody === undefined ? null : t.finalBody.slice(0, 100),
    })),
    victimUnfinished: unfinished,
    botConnectionLog: bot.logLinesSince(0, (l) => l.server === victim && Number(l.time) >= epoch(killedAt) - 5 && /OpenCode (connection|event stream)/.test(String(l.msg)))
      .map((l) => ({ atMs: round(Number(l.time) - epoch(killedAt), 0), msg: String(l.msg), state: l.state, attempt: l.attempt, delayMs: l.delayMs, error: l.error })),
    afterReturn: { prompts: after.length, ok: after.filter((t) => t.ok).length, totalMs: summarize(after.flatMap((t) => (t.totalMs === undefined ? [] : [t.totalMs]))) },
  };
  const botWarnings = countBy(bot.logLinesSince(logFrom, (l) => (l.level ?? 0) >= 40).map((l) => String(l.msg)));

  // Start-up with 1,000 rooms and three servers: the same bot, restarted on its database.
  await bot.stop(join(ctx.logDir, "servers-bot.log"));
  bot = await BenchBot.start(opts);
  const restartWithRoomsMs = round(bot.startMs, 0);
  const restartWithRoomsCpuMs = round(bot.startCpuMs, 0);
  await bot.stop();

  return {
    rooms: rooms.length,
    servers: [...names],
    roomsPerServer,
    concurrency: cfg.concurrency,
    createMs: round(createMs, 0),
    bindMs: round(bindMs, 0),
    bindCommandMs: summarize(bindTimes.flatMap((x) => (x === undefined ? [] : [x]))),
    bindFailures,
    setupCpu: setupCpuUse,
    setupRequests: { total: setup.requests, rateLimited: setup.rateLimited, perRoom: round(setup.requests / rooms.length), byRoute: setup.byRoute },
    idleRssMb,
    idleLoopLag,
    burst,
    outage,
    restartWithRoomsMs,
    restartWithRoomsCpuMs,
    botWarnings,
  };
}
