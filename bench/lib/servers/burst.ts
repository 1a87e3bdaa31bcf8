// Round (a) of the servers phase: `perServer` sessions streaming at once on each of the three
// servers, all of them up; per server what became of its turns.
import { RssSampler } from "../bot.ts";
import { CpuMeter } from "../cpu.ts";
import { interleave } from "../lists.ts";
import { round } from "../stats.ts";
import { observe, roundCommon } from "./observe.ts";
import type { ServersPhase } from "./result.ts";
import type { ServersRig } from "./rig.ts";
import type { ServersRooms } from "./rooms.ts";
import { turnSummary } from "./turn.ts";

export async function runBurst(rig: ServersRig, takeRooms: ServersRooms["takeRooms"]): Promise<ServersPhase["burst"]> {
  const { ctx, cfg, names, bot, proxy, pids } = rig;
  const { say } = ctx;
  // (a) perServer sessions at once on each server.
  await proxy.reset();
  ctx.markLoad("servers-burst", "start");
  say(`  (a) ${cfg.perServer} sessions at once on each of the ${names.length} servers, ${cfg.words} words each`);
  const rss = new RssSampler(bot.pid);
  const cpu = new CpuMeter(pids());
  const t0 = performance.now();
  const burstTurns = await Promise.all(interleave(names.map((n) => takeRooms(n, cfg.perServer).map((room) => ({ n, room }))))
    .map(({ n, room }) => observe(rig, n, room, cfg.words, { exact: true })));
  const burstWall = performance.now() - t0;
  const burstCommon = await roundCommon(rig, burstTurns, cfg.words, burstWall, rss, cpu);
  ctx.markLoad("servers-burst", "end");
  const perServer = names.map((n) => turnSummary(n, burstTurns.filter((t) => t.server === n), cfg.lateMs));
  const burst = { ...burstCommon, lost: perServer.reduce((a, s) => a + s.lost, 0), late: perServer.reduce((a, s) => a + s.late, 0), perServer };
  say(`    wall ${(burstWall / 1000).toFixed(1)} s, lost ${burst.lost}, late ${burst.late}, RSS peak ${burst.rssPeakMb} MB, loop lag p99 ${round(burst.loopLag.lagP99Ms)} ms`);
  for (const s of perServer) say(`    ${s.server}: ack p50/p99 ${s.ackMs.p50}/${s.ackMs.p99} ms, finish ${s.finishMs.p50}/${s.finishMs.p99} ms, lost ${s.lost}, late ${s.late}`);
  return burst;
}
