// relay, ack, finish, cost: sequential streamed replies in one room, one bot behind the counting
// proxy; the floor measured again meanwhile by the floor phase's pair of clients.
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ProxyProcess } from "../../counting-proxy.ts";
import { BenchBot } from "../bot.ts";
import type { BenchContext } from "../context.ts";
import { CpuMeter } from "../cpu.ts";
import { addSplits, promptAndObserve, type Observed } from "../observe-reply.ts";
import { routeSummary } from "../proxy-records.ts";
import { FloorProbe } from "../round-trips.ts";
import { round, splitSummary, summarize } from "../stats.ts";
import { waitForJoin } from "../wait-for-join.ts";
import type { FloorPair } from "./floor.ts";

/** Fills `report.phases.relay`; without `floorPair` (floor phase not run) there is no floor under load. */
export async function runRelayPhase(ctx: BenchContext, floorPair: FloorPair | undefined): Promise<void> {
  const { cfg, say, markLoad, getAlice, reg, hs, cleanups, stateDir, botOptions, stack, recorder, logDir, report } = ctx;
  markLoad("relay", "start");
  say(`relay: ${cfg.relaySessions} sequential replies of ${cfg.relayWords} words at ${cfg.tokenMs} ms/token, window ${cfg.windowMs} ms`);
  const al = await getAlice();
  const botAccount = await reg("relay-bot");
  const proxy = await ProxyProcess.start(hs);
  cleanups.push(() => proxy.stop());
  const dbPath = join(stateDir, "relay-bot.db");
  const bot = await BenchBot.start(botOptions({ homeserverUrl: proxy.url, accessToken: botAccount.accessToken, allowedUsers: [al.userId], databasePath: dbPath }));
  const room = await al.createRoom({ invite: [botAccount.userId] });
  await waitForJoin(al, room, botAccount.userId);
  // One unmeasured answer warms up OpenCode (provider loading) and the bot's code paths.
  const warm = await promptAndObserve(recorder, al, botAccount.userId, dbPath, room, 20, 60_000);
  if (!warm.ok) throw new Error(`warm-up answer failed: ${warm.error}`);
  await sleep(1500);
  await proxy.reset();
  await bot.loopLag();
  const results: Observed[] = [];
  const probe = floorPair ? new FloorProbe(floorPair.a, floorPair.b, floorPair.room) : undefined;
  const cpu = new CpuMeter({ bot: bot.pid, opencode: stack.opencode.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid });
  for (let i = 0; i < cfg.relaySessions; i++) {
    const o = await promptAndObserve(recorder, al, botAccount.userId, dbPath, room, cfg.relayWords, 60_000, true);
    addSplits(recorder, o, await proxy.sends(), true);
    results.push(o);
    say(`  reply ${i + 1}: ack ${o.ackMs?.toFixed(0)} ms, ${o.edits} edits, finish ${o.finishMs?.toFixed(0)} ms${o.ok ? "" : ` FAILED ${o.error}`}`);
    await sleep(300);
  }
  const cpuUse = cpu.stop();
  // Only the probes sent while OpenCode was streaming one of the replies: the moments edits are sent.
  const streaming = results.flatMap((r) => {
    const m = r.marks;
    const first = m?.sessionId ? recorder.partsOf(m.sessionId)[0]?.deltas[0]?.at : undefined;
    return m?.idleAt !== undefined && first !== undefined ? [[first, m.idleAt] as const] : [];
  });
  const underLoad = ((await probe?.stop()) ?? []).filter((x) => streaming.some(([a, b]) => x.at >= a && x.at <= b));
  markLoad("relay", "end");
  await sleep(1000);
  const counts = await proxy.reset();
  const lag = await bot.loopLag();
  const mem = bot.memory();
  await bot.stop(join(logDir, "relay-bot.log"));
  const perDelta = results.flatMap((r) => r.perDeltaMs);
  const perEdit = results.flatMap((r) => r.perEditMs);
  const okCount = results.filter((r) => r.ok).length;
  const routes = routeSummary(counts);
  const tokens = cfg.relayWords * results.length;
  report.phases.relay = {
    replies: results.length,
    floorDuringRelayMs: summarize(underLoad.map((x) => x.ms)),
    floorPutDuringRelayMs: summarize(underLoad.map((x) => x.putMs)),
    lost: results.length - okCount,
    errors: results.flatMap((r) => (r.error ? [r.error] : [])),
    ackMs: summarize(results.flatMap((r) => (r.ackMs === undefined ? [] : [r.ackMs]))),
    finishMs: summarize(results.flatMap((r) => (r.finishMs === undefined ? [] : [r.finishMs]))),
    totalMs: summarize(results.flatMap((r) => (r.totalMs === undefined ? [] : [r.totalMs]))),
    deltaToVisibleMs: summarize(perDelta),
    deltaToVisibleMinusWindowMs: summarize(perDelta.map((x) => x - cfg.windowMs)),
    editPipelineMs: summarize(perEdit),
    editSplitMs: splitSummary(results.flatMap((r) => r.editSplit)),
    editIntervalMs: summarize(results.flatMap((r) => r.editIntervals)),
    alicePutMs: summarize(results.flatMap((r) => (r.alicePutMs === undefined ? [] : [r.alicePutMs]))),
    ackSplitMs: splitSummary(results.flatMap((r) => (r.ackSplit ? [r.ackSplit] : []))),
    finishSplitMs: splitSummary(results.flatMap((r) => (r.finishSplit ? [r.finishSplit] : []))),
    deltasOnlyInFinal: results.reduce((a, r) => a + r.deltasInFinal, 0),
    deltasMissing: results.reduce((a, r) => a + r.deltasMissing, 0),
    editsPerReply: summarize(results.flatMap((r) => (r.edits === undefined ? [] : [r.edits]))),
    requests: {
      total: counts.requests,
      rateLimited: counts.rateLimited,
      ...routes,
      perReply: round(counts.requests / results.length),
      writesPerReply: round(routes.writes / results.length),
      per1000Tokens: round((counts.requests / tokens) * 1000),
      writesPer1000Tokens: round((routes.writes / tokens) * 1000),
      byRoute: counts.byRoute,
    },
    bot: { loopLag: lag, rssMb: round(mem.rssMb), peakRssMb: round(mem.hwmMb) },
    cpu: cpuUse,
  };
}
