// Preloaded into the bot by the benchmark (`NODE_OPTIONS=--import=<this file>`), so the bot's
// event-loop delay can be measured without changing src/. On SIGUSR2 it writes one JSON line
// to stderr with the delay histogram since the previous SIGUSR2 (then starts a new period).
// monitorEventLoopDelay records the whole interval between two ticks of a timer that should
// fire every RESOLUTION ms, so the lag is the recorded value minus RESOLUTION.
import { monitorEventLoopDelay } from "node:perf_hooks";

const RESOLUTION_MS = 10;
const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
histogram.enable();
let seq = 0;
let since = Date.now();

const lagMs = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS);

// Stalls of the loop over 50 ms, each with the CPU time the process used meanwhile: a stall with
// little CPU is the process waiting (not scheduled on a busy machine, or blocked in a system call),
// a stall with as much CPU as wall time is the bot's own synchronous work.
const STALL_MS = 50;
let stalls: Array<{ ms: number; cpuMs: number }> = [];
let last = performance.now();
let lastCpu = process.cpuUsage();
setInterval(() => {
  const now = performance.now();
  const cpu = process.cpuUsage();
  const gap = now - last - RESOLUTION_MS;
  if (gap > STALL_MS) stalls.push({ ms: gap, cpuMs: (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000 });
  last = now;
  lastCpu = cpu;
}, RESOLUTION_MS).unref();

process.on("SIGUSR2", () => {
  const mem = process.memoryUsage();
  const line = {
    msg: "bench.loop-lag",
    seq: ++seq,
    periodMs: Date.now() - since,
    samples: histogram.count,
    lagP50Ms: lagMs(histogram.percentile(50)),
    lagP99Ms: lagMs(histogram.percentile(99)),
    lagMaxMs: lagMs(histogram.max),
    lagMeanMs: lagMs(histogram.mean),
    stalls: stalls.length,
    stallMs: Math.round(stalls.reduce((a, x) => a + x.ms, 0)),
    stallCpuMs: Math.round(stalls.reduce((a, x) => a + x.cpuMs, 0)),
    worstStalls: stalls.toSorted((a, b) => b.ms - a.ms).slice(0, 5).map((x) => ({ ms: Math.round(x.ms), cpuMs: Math.round(x.cpuMs) })),
    rssMb: mem.rss / 2 ** 20,
    heapUsedMb: mem.heapUsed / 2 ** 20,
  };
  histogram.reset();
  stalls = [];
  since = Date.now();
  process.stderr.write(`${JSON.stringify(line)}\n`);
});
