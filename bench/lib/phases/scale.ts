// scale: N concurrent sessions in N rooms, one bot, one OpenCode server; per level the bot's
// loop lag, CPU and RSS, and what became of each reply; then the bot restarted on all the rooms.
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { ProxyProcess } from "../../counting-proxy.ts";
import { BenchBot, RssSampler } from "../bot.ts";
import type { BenchContext } from "../context.ts";
import { CpuMeter } from "../cpu.ts";
import { HealthProbe } from "../health-probe.ts";
import { countBy, mapLimit } from "../lists.ts";
import type { OpencodeEventRecorder } from "../oc-events.ts";
import { addSplits, promptAndObserve } from "../observe-reply.ts";
import { routeSummary } from "../proxy-records.ts";
import { isConnectionNotice } from "../replies.ts";
import type { ScaleLevel } from "../report.ts";
import { round, splitSummary, summarize } from "../stats.ts";
import { waitForJoin } from "../wait-for-join.ts";

/** Resolves once all `n` replies are final, or OpenCode finished all their sessions and no final came for 10 s. */
async function untilSettled(recorder: OpencodeEventRecorder, n: number, roots: string[], progress: { finals: number; lastChange: number }, dbPath: string): Promise<void> {
  for (;;) {
    await sleep(500);
    if (progress.finals >= n) return;
    if (roots.length < n || performance.now() - progress.lastChange < 10_000) continue;
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    let ids: Array<string | undefined>;
    try {
      const q = db.prepare("SELECT session_id FROM threads WHERE root_event_id = ?");
      ids = roots.map((r) => (q.get(r) as { session_id: string } | undefined)?.session_id);
    } finally {
      db.close();
    }
    if (ids.every((id) => id !== undefined && recorder.sessions.get(id)?.idleAt !== undefined)) return;
  }
}

/** Fills `report.phases.scale`. */
export async function runScalePhase(ctx: BenchContext): Promise<void> {
  const { cfg, say, markLoad, getAlice, reg, hs, cleanups, stateDir, botOptions, profileDir, stack, recorder, logDir, report } = ctx;
  const maxRooms = Math.max(...cfg.scaleLevels);
  say(`scale: creating ${maxRooms} rooms with the bot`);
  const al = await getAlice();
  const botAccount = await reg("scale-bot");
  const proxy = await ProxyProcess.start(hs);
  cleanups.push(() => proxy.stop());
  const dbPath = join(stateDir, "scale-bot.db");
  const opts = botOptions({
    homeserverUrl: proxy.url, accessToken: botAccount.accessToken, allowedUsers: [al.userId], databasePath: dbPath,
    ...(cfg.profile ? { cpuProfileDir: join(profileDir, "scale") } : {}),
  });
  let bot = await BenchBot.start(opts);
  const rooms = await mapLimit(Array.from({ length: maxRooms }, (_, i) => i), 8, async (i) => {
    const room = await al.createRoom({ name: `bench ${i}`, invite: [botAccount.userId] });
    await waitForJoin(al, room, botAccount.userId, 120_000);
    return room;
  });
  const idle = { rssMb: round(bot.memory().rssMb) };
  say(`  ${rooms.length} rooms joined; bot RSS ${idle.rssMb} MB`);
  const levels: ScaleLevel[] = [];
  for (const n of cfg.scaleLevels) {
    await sleep(2000);
    await bot.loopLag();
    await proxy.reset();
    const rss = new RssSampler(bot.pid);
    const cpu = new CpuMeter({ bot: bot.pid, opencode: stack.opencode.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid });
    const logFrom = bot.bot.lines.length;
    const health = new HealthProbe(`${stack.info.opencode.url}/global/health`);
    const t0 = performance.now();
    say(`  ${n} concurrent sessions of ${cfg.scaleWords} words`);
    markLoad(`scale-${n}`, "start");
    const roots: string[] = [];
    const progress = { finals: 0, lastChange: performance.now() };
    const pending = Promise.all(rooms.slice(0, n).map((room) => promptAndObserve(recorder, al, botAccount.userId, dbPath, room, cfg.scaleWords, cfg.scaleTimeoutMs, false, {
      onRoot: (root) => roots.push(root),
      onFinal: () => {
        progress.finals++;
        progress.lastChange = performance.now();
      },
    })));
    // The level's busy part ends when every reply is final, or when OpenCode has finished every
    // session and no final arrived for 10 s (the rest are lost): the lag, CPU and RSS of the
    // level cover that part, not the wait for lost replies to time out.
    await Promise.race([pending, untilSettled(recorder, n, roots, progress, dbPath)]);
    const wallMs = performance.now() - t0;
    const cpuUse = cpu.stop();
    const healthMs = await health.stop();
    markLoad(`scale-${n}`, "end");
    const lag = await bot.loopLag();
    const peak = rss.stop();
    const results = await pending;
    await sleep(1000);
    const sendList = await proxy.sends();
    for (const r of results) addSplits(recorder, r, sendList, false);
    const counts = await proxy.reset();
    const lost = results.filter((r) => !r.ok);
    const notices = rooms.slice(0, n).flatMap((room) => al.seenEvents(room))
      .filter((e) => e.sender === botAccount.userId && e.receivedAt >= t0 && isConnectionNotice(String(e.content.body ?? ""))).length;
    const late = results.filter((r) => r.ok && r.finishMs !== undefined && r.finishMs > cfg.lateMs);
    const routes = routeSummary(counts);
    const level: ScaleLevel = {
      sessions: n,
      wallMs: round(wallMs, 0),
      lost: lost.length,
      late: late.length,
      errors: countBy(lost.map((r) => r.error ?? "?")),
      connectionNotices: notices,
      opencodeHealthMs: summarize(healthMs),
      botWarnings: countBy(bot.logLinesSince(logFrom, (l) => (l.level ?? 0) >= 40).map((l) => String(l.msg))),
      cpu: cpuUse,
      rssPeakMb: round(peak),
      rssAfterMb: round(bot.memory().rssMb),
      loopLag: lag,
      ackMs: summarize(results.flatMap((r) => (r.ackMs === undefined ? [] : [r.ackMs]))),
      finishMs: summarize(results.flatMap((r) => (r.finishMs === undefined ? [] : [r.finishMs]))),
      totalMs: summarize(results.flatMap((r) => (r.totalMs === undefined ? [] : [r.totalMs]))),
      editsPerReply: summarize(results.flatMap((r) => (r.edits === undefined ? [] : [r.edits]))),
      alicePutMs: summarize(results.flatMap((r) => (r.alicePutMs === undefined ? [] : [r.alicePutMs]))),
      ackSplitMs: splitSummary(results.flatMap((r) => (r.ackSplit ? [r.ackSplit] : []))),
      finishSplitMs: splitSummary(results.flatMap((r) => (r.finishSplit ? [r.finishSplit] : []))),
      requests: { total: counts.requests, rateLimited: counts.rateLimited, ...routes, perReply: round(counts.requests / n), byRoute: counts.byRoute },
    };
    levels.push(level);
    say(`    wall ${(wallMs / 1000).toFixed(1)} s, lost ${lost.length}, late ${late.length}, RSS peak ${round(peak)} MB, loop lag p99 ${round(lag.lagP99Ms)} ms, finish p99 ${level.finishMs.p99} ms`);
  }
  // Start-up with many rooms: the same bot, restarted on its database.
  await bot.stop(join(logDir, "scale-bot.log"));
  bot = await BenchBot.start({ ...opts, cpuProfileDir: undefined });
  const restartMs = bot.startMs;
  const restartCpuMs = bot.startCpuMs;
  await bot.stop();
  report.phases.scale = { rooms: rooms.length, idleRssMb: idle.rssMb, levels, restartWithRoomsMs: round(restartMs, 0), restartWithRoomsCpuMs: round(restartCpuMs, 0), ...(cfg.profile ? { profileDir: join(profileDir, "scale") } : {}) };
}
