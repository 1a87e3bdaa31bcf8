// start: process spawn → "bot ready", Synapse and OpenCode already up; cold (a new database)
// and warm (a restart on the same database), optionally one profiled warm start.
import { join } from "node:path";
import type { RegisteredUser } from "../../../test/harness/synapse.ts";
import { BenchBot } from "../bot.ts";
import type { BenchContext } from "../context.ts";
import { summarize } from "../stats.ts";

/** `n` bot starts of one kind, each stopped again: wall and CPU time to "bot ready". */
async function startSamples(ctx: BenchContext, kind: "cold" | "warm", n: number, account: RegisteredUser): Promise<Array<{ ms: number; cpuMs: number }>> {
  const { stateDir, botOptions, hs } = ctx;
  const out: Array<{ ms: number; cpuMs: number }> = [];
  const dbPath = join(stateDir, `start-${kind}.db`);
  for (let i = 0; i < n; i++) {
    const path = kind === "cold" ? join(stateDir, `start-cold-${i}.db`) : dbPath;
    const b = await BenchBot.start(botOptions({ homeserverUrl: hs, accessToken: account.accessToken, allowedUsers: ["@nobody:localhost"], databasePath: path }));
    out.push({ ms: b.startMs, cpuMs: b.startCpuMs });
    await b.stop();
  }
  return out;
}

/** Fills `report.phases.start`. */
export async function runStartPhase(ctx: BenchContext): Promise<void> {
  const { cfg, say, markLoad, reg, hs, botOptions, stateDir, profileDir, report } = ctx;
  markLoad("start", "start");
  say(`start: ${cfg.startSamples} cold starts (new database) and ${cfg.startSamples} warm restarts`);
  const account = await reg("start-bot");
  await startSamples(ctx, "warm", 1, account); // creates the database the warm starts reuse
  const cold = await startSamples(ctx, "cold", cfg.startSamples, account);
  const warm = await startSamples(ctx, "warm", cfg.startSamples, account);
  let profile: string | undefined;
  if (cfg.profile) {
    const b = await BenchBot.start(botOptions({
      homeserverUrl: hs, accessToken: account.accessToken, allowedUsers: ["@nobody:localhost"],
      databasePath: join(stateDir, "start-warm.db"), cpuProfileDir: join(profileDir, "start"),
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
    ...(profile ? { profileDir: profile } : {}),
  };
  say(`  cold p50 ${report.phases.start.coldMs.p50} ms, warm p50 ${report.phases.start.warmMs.p50} ms`);
}
