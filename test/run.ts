// `npm test`: boots the real servers once (Synapse, the scripted model, OpenCode; Letta only when a
// Letta e2e file is selected), runs the unit and end-to-end test files against them with node's
// test runner, and tears everything down.
import { spawn } from "node:child_process";
import { globSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootStack, repoDir, writeStackInfo } from "./harness/stack.ts";

const args = process.argv.slice(2);
const only = args.filter((a) => !a.startsWith("--"));
const files = only.length > 0 ? only : ["test/unit/*.test.ts", "test/e2e/*.test.ts"];
const needsStack = files.some((f) => f.includes("e2e"));
// The real Letta server (about 450 MB, 15-40 s to start) only for runs that include a Letta e2e file.
const needsLetta = files.flatMap((f) => (f.includes("*") ? globSync(f, { cwd: repoDir }) : [f])).some((f) => /e2e\/[^/]*letta[^/]*\.test\.ts$/.test(f));
const t0 = performance.now();
const workDir = mkdtempSync(join(tmpdir(), "bot-test-"));
const say = (line: string): void => void process.stdout.write(`[test-run] ${line}\n`);

const stack = needsStack ? await bootStack(workDir, { log: (l) => say(l), letta: needsLetta }) : undefined;
const bootMs = performance.now() - t0;
if (stack) {
  for (const [name, ms] of stack.timings) say(`set-up ${name}: ${(ms / 1000).toFixed(1)} s`);
  say(`set-up total: ${(bootMs / 1000).toFixed(1)} s`);
}
const stackFile = join(workDir, "stack.json");
if (stack) writeStackInfo(stackFile, stack.info);

const t1 = performance.now();
const child = spawn(
  process.execPath,
  ["--disable-warning=ExperimentalWarning", "--test", "--test-concurrency=2", "--test-reporter=spec", ...files],
  { cwd: repoDir, stdio: "inherit", env: { ...process.env, TEST_STACK_FILE: stackFile } },
);
const stopChild = (): void => void child.kill("SIGTERM");
process.once("SIGINT", stopChild);
process.once("SIGTERM", stopChild);
const code: number = await new Promise((resolve) => child.once("exit", (c, sig) => resolve(c ?? (sig ? 1 : 0))));
const testMs = performance.now() - t1;

const t2 = performance.now();
await stack?.stop();
if (!process.env.KEEP_TEST_DIR) rmSync(workDir, { recursive: true, force: true });
say(`time: set-up ${(bootMs / 1000).toFixed(1)} s, tests ${(testMs / 1000).toFixed(1)} s, tear-down ${((performance.now() - t2) / 1000).toFixed(1)} s`);
process.exit(code);
