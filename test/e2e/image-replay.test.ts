import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { envOverrides } from "../../src/config/load.ts";
import { loadStackInfo, repoDir } from "../harness/stack.ts";
import { registerUser } from "../harness/synapse.ts";

// No Docker engine runs here, so the image is checked by replaying its Dockerfile outside Docker
// (scripts/replay-image-build.sh): the COPYs, the builder's install and checks, the runtime ENV,
// the CMD against the shared Synapse, and the HEALTHCHECK until GET /health answers 200.
// OpenCode is the embedded default: the binary that the replayed install put into node_modules.

test("the Dockerfile's build steps, replayed outside Docker, give a bot whose /health answers 200", { timeout: 180_000 }, async (t) => {
  const stack = loadStackInfo();
  const account = await registerUser(stack.synapse.baseUrl, stack.synapse.sharedSecret, `replay-bot-${Date.now().toString(36)}`);
  const env: Record<string, string | undefined> = { ...process.env };
  for (const { env: name } of envOverrides) delete env[name]; // nothing from the caller's shell
  Object.assign(env, {
    MATRIX_HOMESERVER_URL: stack.synapse.baseUrl,
    MATRIX_ACCESS_TOKEN: account.accessToken,
    BOT_ALLOWED_USERS: "@nobody:localhost",
    LOG_LEVEL: "info",
  });
  const t0 = performance.now();
  const child = spawn("bash", [join(repoDir, "scripts/replay-image-build.sh")], { cwd: repoDir, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => void (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => void (output += d));
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  for (const line of output.split("\n").filter((l) => /^\[replay\] (RUN| {2}done|HEALTHCHECK|OK|FAILED|opencode binary)/.test(l))) {
    t.diagnostic(line.slice(0, 200));
  }
  t.diagnostic(`replay took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(code, 0, `the replay succeeded:\n${output}`);
  assert.match(output, /HEALTHCHECK passes: .*HTTP 200/);
  assert.match(output, /"ok":true/, "GET /health reports every part usable");
  assert.match(output, /SIGTERM: the bot exited with 0/);
});
