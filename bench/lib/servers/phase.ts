// The "servers" phase: one bot, three real `opencode serve` processes, 1,000 rooms bound
// round-robin with `!oc server <name>`. (a) 20 sessions streaming at once on each server; (b)
// again, with longer answers, and one server killed (SIGKILL) mid-stream; then the bot restarted
// on all those rooms. Set-up in rig.ts and rooms.ts, the rounds in burst.ts and outage.ts.
import { join } from "node:path";
import { BenchBot } from "../bot.ts";
import { countBy } from "../lists.ts";
import { round, summarize } from "../stats.ts";
import { runBurst } from "./burst.ts";
import { runOutage } from "./outage.ts";
import type { ServersPhase } from "./result.ts";
import { startServersRig, type ServersContext } from "./rig.ts";
import { createAndBindRooms } from "./rooms.ts";

export type { ServersConfig, ServersContext } from "./rig.ts";
export type { ServersPhase, ServerTurns } from "./result.ts";

export async function runServersPhase(ctx: ServersContext): Promise<ServersPhase> {
  const { cfg } = ctx;
  const rig = await startServersRig(ctx);
  const { names, bot, opts } = rig;
  const { rooms, roomsPerServer, createMs, bindMs, bindTimes, bindFailures, setup, setupCpuUse, idleLoopLag, idleRssMb, takeRooms } = await createAndBindRooms(rig);

  const logFrom = bot.bot.lines.length;
  const burst = await runBurst(rig, takeRooms);
  const outage = await runOutage(rig, takeRooms);
  const botWarnings = countBy(bot.logLinesSince(logFrom, (l) => (l.level ?? 0) >= 40).map((l) => String(l.msg)));

  // Start-up with 1,000 rooms and three servers: the same bot, restarted on its database.
  await bot.stop(join(ctx.logDir, "servers-bot.log"));
  const restarted = await BenchBot.start(opts);
  const restartWithRoomsMs = round(restarted.startMs, 0);
  const restartWithRoomsCpuMs = round(restarted.startCpuMs, 0);
  await restarted.stop();

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
