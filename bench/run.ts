// `npm run bench`: boots the same real stack as the tests (Synapse on loopback, the scripted
// model streaming at a fixed token cadence, the real `opencode serve`), drives the real bot
// process through it, prints a table and writes bench/results/bench-<date>.json + latest.json.
// `npm run bench -- --quick` is a small run for development; `--help` lists the knobs.
// The phases live in bench/lib/phases/ and bench/lib/servers/; they run in this order, which
// is also the order of `phases` in the JSON.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readBenchArgs } from "./lib/config.ts";
import { startBench } from "./lib/context.ts";
import { runFloorPhase, type FloorPair } from "./lib/phases/floor.ts";
import { runRateLimitPhase } from "./lib/phases/ratelimit.ts";
import { runRelayPhase } from "./lib/phases/relay.ts";
import { runScalePhase } from "./lib/phases/scale.ts";
import { runStartPhase } from "./lib/phases/start.ts";
import { evaluateTargets, printReport } from "./lib/report.ts";
import { runServersPhase } from "./lib/servers/phase.ts";
import { round } from "./lib/stats.ts";

const { cfg, phases, keep } = readBenchArgs();
const ctx = await startBench(cfg);
const { t00, say, loads, markLoad, resultsDir, workDir, stateDir, logDir, stack, reg, recorder, cleanups, report, botOptions } = ctx;

// ---------------------------------------------------------------------------------------------
// floor: a plain client's send, seen through a second client's sync.
let floorP50 = Number.NaN;
let floorP99 = Number.NaN;
let floorPair: FloorPair | undefined;
if (phases.has("floor") || phases.has("relay")) {
  const floor = await runFloorPhase(ctx);
  floorP50 = floor.p50;
  floorP99 = floor.p99;
  floorPair = floor.pair;
}

// relay, ack, finish, cost: sequential streamed replies in one room.
if (phases.has("relay")) await runRelayPhase(ctx, floorPair);

// start: process spawn → "bot ready", Synapse and OpenCode already up.
if (phases.has("start")) await runStartPhase(ctx);

// scale: N concurrent sessions in N rooms, one bot, one OpenCode server.
if (phases.has("scale") && cfg.scaleLevels.length > 0) await runScalePhase(ctx);

// servers: 1,000 rooms over three OpenCode servers; 20 sessions at once on each; one killed mid-stream.
if (phases.has("servers")) {
  report.phases.servers = await runServersPhase({
    cfg: {
      rooms: Math.max(3 * (2 * cfg.serversSessions + 3), cfg.serversRooms), // enough unused rooms per server for both rounds
      perServer: cfg.serversSessions,
      words: cfg.serversWords,
      outageWords: cfg.serversOutageWords,
      concurrency: cfg.serversConcurrency,
      lateMs: cfg.lateMs,
      timeoutMs: cfg.scaleTimeoutMs,
      noticeTargetMs: 5000,
    },
    stack, recorder, workDir, stateDir, logDir, reg, botOptions, say, markLoad, cleanups,
  });
}

// ratelimit: Synapse with its default rate limits, one long answer.
if (phases.has("ratelimit")) await runRateLimitPhase(ctx);

// ---------------------------------------------------------------------------------------------
report.load = loads;
report.durationS = round((performance.now() - t00) / 1000, 0);
for (const c of cleanups.reverse()) await c().catch(() => undefined);
await recorder.stop();
await stack.stop();
if (!keep) rmSync(workDir, { recursive: true, force: true });
else say(`kept ${workDir}`);

report.floor = { p50: floorP50, p99: floorP99 };
report.targets = evaluateTargets(report);
const file = join(resultsDir, `bench-${report.date.replace(/[:.]/g, "-")}.json`);
const json = `${JSON.stringify(report, null, 2)}\n`;
writeFileSync(file, json);
writeFileSync(join(resultsDir, "latest.json"), json);
printReport(report);
process.stdout.write(`\nwrote ${file} and bench/results/latest.json (${report.durationS} s)\n`);
process.exit(0);
