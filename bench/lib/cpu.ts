// CPU seconds used by the processes of the stack during a period, from /proc, next to the
// machine's total: on a shared 2-core machine this shows who had the CPU while we measured.
import { readFileSync } from "node:fs";

const TICKS_PER_S = 100; // USER_HZ on Linux

/** CPU time a process has used so far (user + system), in ms. */
export function processCpuMs(pid: number): number {
  return (processTicks(pid) * 1000) / TICKS_PER_S;
}

function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch {
    return Number.NaN;
  }
}

function machineTicks(): { busy: number; total: number } {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const total = cpu.reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

export interface CpuUse {
  wallS: number;
  /** CPU seconds per named process. */
  byProcess: Record<string, number>;
  /** CPU seconds of every process on the machine (all cores). */
  machineBusyS: number;
  /** machine busy − the named processes: other work sharing the machine. */
  othersS: number;
}

export class CpuMeter {
  private readonly pids: Record<string, number>;
  private readonly start: Record<string, number>;
  private readonly machine0: { busy: number; total: number };
  private readonly t0 = performance.now();

  constructor(pids: Record<string, number>) {
    this.pids = pids;
    this.start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processTicks(pid)]));
    this.machine0 = machineTicks();
  }

  stop(): CpuUse {
    const byProcess: Record<string, number> = {};
    let ours = 0;
    for (const [k, pid] of Object.entries(this.pids)) {
      const s = (processTicks(pid) - (this.start[k] ?? 0)) / TICKS_PER_S;
      byProcess[k] = Math.round(s * 100) / 100;
      if (!Number.isNaN(s)) ours += s;
    }
    const m = machineTicks();
    const machineBusyS = (m.busy - this.machine0.busy) / TICKS_PER_S;
    return {
      wallS: Math.round((performance.now() - this.t0) / 10) / 100,
      byProcess,
      machineBusyS: Math.round(machineBusyS * 100) / 100,
      othersS: Math.round((machineBusyS - ours) * 100) / 100,
    };
  }
}

/**
 * Waits until the machine is nearly idle (all cores together busy less than `busyBelow` over
 * half a second), at most `maxMs`: a start measured while Synapse and OpenCode still settle
 * after their own start, or after the previous bot's exit, measures them. Resolves with the
 * time waited and the last window's busy share.
 */
export async function waitForQuietMachine(maxMs: number, busyBelow = 0.15): Promise<{ waitedMs: number; busy: number }> {
  const t0 = Date.now();
  let busy = 1;
  while (Date.now() - t0 < maxMs) {
    const a = machineTicks();
    await new Promise((r) => setTimeout(r, 500));
    const b = machineTicks();
    busy = (b.busy - a.busy) / Math.max(1, b.total - a.total);
    if (busy < busyBelow) break;
  }
  return { waitedMs: Date.now() - t0, busy };
}
