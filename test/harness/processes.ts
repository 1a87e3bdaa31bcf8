// The processes a bot left behind, as /proc shows them: for the tests that kill a bot on its
// embedded OpenCode server (test/e2e/reliability-embedded, crash-points-embedded).
import { readdirSync, readFileSync } from "node:fs";

/** The `opencode serve` processes (bwrap included) of the bot whose OpenCode home is `home`, zombies left out. */
export function serversOf(home: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (!args.some((a) => a.includes("opencode")) || !args.includes("serve")) continue;
      if (readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]?.startsWith("Z")) continue;
      if (readFileSync(`/proc/${name}/environ`, "utf8").split("\0").includes(`HOME=${home}`)) found.push(Number(name));
    } catch { /* gone, or not ours to read */ }
  }
  return found.sort((a, b) => a - b);
}

/** Polls `probe` every 100 ms until it gives a value. */
export async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends a signal to a process (a negative pid: its group) that may be gone already. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch { /* gone */ }
}
