// start: process spawn → "bot ready", Synapse and OpenCode already up; cold (a new database),
// warm (a restart on the same database) and first (after a build: no code cache yet, a new
// database), optionally one profiled warm start. The bot as `npm start` runs it (the built launcher).
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { codeCacheFile } from "../../../src/startup/bundle.ts";
import type { RegisteredUser } from "../../../test/harness/synapse.ts";
import { BenchBot, benchDir } from "../bot.ts";
import { waitForQuietMachine } from "../cpu.ts";
import type { BenchContext } from "../context.ts";
import { summarize } from "../stats.ts";

/** `n` bot starts of one kind, each stopped again: wall and CPU time to "bot ready". */
async function startSamples(ctx: BenchContext, kind: "cold" | "warm" | "first", n: number, account: RegisteredUser): Promise<Array<{ ms: number; cpuMs: number }>> {
  const { stateDir, botOptions, hs, say } = ctx;
  const quiet: Array<{ waitedMs: number; busy: number }> = [];
  const out: Array<{ ms: number; cpuMs: number }> = [];
  const dbPath = join(stateDir, `start-${kind}.db`);
  for (let i = 0; i < n; i++) {
    const path = kind === "warm" ? dbPath : join(stateDir, `start-${kind}-${i}.db`);
    if (kind === "first") rmSync(dirname(codeCacheFile(join(benchDir, ".."))), { recursive: true, force: true });
    // Not while the previous bot's exit (or the stack's own start) still keeps Synapse and OpenCode busy.
    quiet.push(await waitForQuietMachine(10_000));
    const b = await BenchBot.start(botOptions({ homeserverUrl: hs, accessToken: account.accessToken, allowedUsers: ["@nobody:localhost"], databasePath: path, loopLagProbe: false }));
    out.push({ ms: b.startMs, cpuMs: b.startCpuMs });
    await b.stop();
  }
  const waited = quiet.map((q) => q.waitedMs).sort((a, b) => a - b);
  say(`  ${kind}: waited ${waited[0] ?? 0}–${waited.at(-1) ?? 0} ms before each start for a quiet machine (busy ${Math.round(Math.max(...quiet.map((q) => q.busy)) * 100)} % at most when started)`);
  return out;
}

/** Fills `report.phases.start`. */
export async function runStartPhase(ctx: BenchContext): Promise<void> {
  const { cfg, say, markLoad, reg, hs, botOptions, stateDir, profileDir, report } = ctx;
  markLoad("start", "start");
  say(`start: ${cfg.startSamples} cold starts (new database), ${cfg.startSamples} warm restarts and ${cfg.startSamples} first starts after a build (no code cache)`);
  const account = await reg("start-bot");
  await startSamples(ctx, "warm", 1, account); // creates the database the warm starts reuse
  const cold = await startSamples(ctx, "cold", cfg.startSamples, account);
  const warm = await startSamples(ctx, "warm", cfg.startSamples, account);
  // Last: each leaves a code cache that the next removes, and the last one's stays for what follows.
  const first = await startSamples(ctx, "first", cfg.startSamples, account);
  let profile: string | undefined;
  if (cfg.profile) {
    const b = await BenchBot.start(botOptions({
      homeserverUrl: hs, accessToken: account.accessToken, allowedUsers: ["@nobody:localhost"],
      databasePath: join(stateDir, "start-warm.db"), cpuProfileDir: join(profileDir, "start"), loopLagProbe: false,
    }));
    await b.stop();
    profile = join(profileDir, "start");
  }
  markLoad("start", "end");
  report.phases.start = {
    coldMs: summarize(cold.map((x) => x.ms)),
    warmMs: summarize(warm.map((x) => x.ms)),
    coldCpuMs: summarize(cold.map((x) => x.cpuMs)),
    warmCpuMs: summarize(warm.map((x) => x.cpuMs)),
    firstMs: summarize(first.map((x) => x.ms)),
    firstCpuMs: summarize(first.map((x) => x.cpuMs)),
    ...(profile ? { profileDir: profile } : {}),
  };
  say(`  cold p50 ${report.phases.start.coldMs.p50} ms, warm p50 ${report.phases.start.warmMs.p50} ms, first after a build p50 ${report.phases.start.firstMs?.p50 ?? "-"} ms`);
}
