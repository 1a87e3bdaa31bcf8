// Starts a real OpenCode server wired to the scripted model, with isolated state.
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startEmbeddedOpencode } from "../../src/opencode/embedded-server.ts";
import type { EmbeddedServer } from "../../src/opencode/embedded-server.ts";
import { freePort } from "./net.ts";

export interface TestOpencodeOptions {
  workspaceDir: string; // the project directory OpenCode works in
  stateDir: string; // HOME/XDG dirs, opencode.db, logs, and the config file live here
  modelBaseUrl: string; // e.g. ScriptedModel.baseUrl (http://127.0.0.1:P/v1)
  permissionBash?: "ask" | "allow"; // default "ask"
  extraConfig?: Record<string, unknown>; // deep-merged into the generated config
  onLog?: (line: string) => void; // every server log line is also appended to <stateDir>/opencode.log
  readyTimeoutMs?: number;
  env?: Record<string, string>; // extra environment for the server (and the plugins it loads)
  password?: string; // the server demands basic auth: this password, OpenCode's default user name
  // Default: a free port from freePort(). Not 0: `opencode serve --port 0` first tries 4096 and only then a
  // random port, so parallel test servers would fight over 4096 when they restart on "the same port".
  port?: number;
}

export type TestOpencode = EmbeddedServer & {
  /** Stops (or waits for a killed) server and starts it again on the SAME port. */
  restart(): Promise<void>;
  configPath: string;
  config: Record<string, unknown>;
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function deepMerge(a: Obj, b: Obj): Obj {
  const out: Obj = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isObj(v) && isObj(out[k]) ? deepMerge(out[k] as Obj, v) : v;
  return out;
}

export function testOpencodeConfig(modelBaseUrl: string, permissionBash: "ask" | "allow" = "ask", extra: Obj = {}): Obj {
  return deepMerge({
    $schema: "https://opencode.ai/config.json",
    model: "fake/fake-model",
    small_model: "fake/fake-model",
    autoupdate: false,
    share: "disabled",
    enabled_providers: ["fake"],
    provider: {
      fake: {
        npm: "@ai-sdk/openai-compatible",
        name: "Fake LLM",
        options: { baseURL: modelBaseUrl, apiKey: "sk-fake" },
        models: { "fake-model": { name: "Fake Model", tool_call: true, limit: { context: 128000, output: 4096 } } },
      },
    },
    permission: { bash: permissionBash },
  }, extra);
}

export async function startTestOpencode(opts: TestOpencodeOptions): Promise<TestOpencode> {
  mkdirSync(opts.stateDir, { recursive: true });
  mkdirSync(opts.workspaceDir, { recursive: true });
  const config = testOpencodeConfig(opts.modelBaseUrl, opts.permissionBash ?? "ask", opts.extraConfig ?? {});
  // Kept out of the workspace so it does not show up as a changed file there.
  const configPath = path.join(opts.stateDir, "opencode.test.json");
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const logFile = createWriteStream(path.join(opts.stateDir, "opencode.log"), { flags: "a" });
  const start = (port: number) => startEmbeddedOpencode({
    cwd: opts.workspaceDir,
    homeDir: opts.stateDir,
    env: { ...opts.env, OPENCODE_CONFIG: configPath },
    ...(opts.password === undefined ? {} : { auth: { password: opts.password } }),
    port,
    readyTimeoutMs: opts.readyTimeoutMs ?? 60_000, // a cold start on a busy 2-core machine took over 20 s
    onLog: (line) => {
      logFile.write(line + "\n");
      opts.onLog?.(line);
    },
  });

  let current = await start(opts.port ?? (await freePort()));
  const port = Number(new URL(current.url).port);

  const restart = async () => {
    await current.stop(); // no-op when the test already killed it
    let lastError: unknown;
    // The listening socket is gone once the process exits, but retry a little in case the port lingers.
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        current = await start(port);
        return;
      } catch (e) {
        lastError = e;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    throw lastError;
  };

  return {
    get url() { return current.url; },
    get pid() { return current.pid; },
    get exited() { return current.exited; },
    stop: () => current.stop(), // the log stream stays open: restart() may follow a stop()
    kill: (signal?: NodeJS.Signals) => current.kill(signal),
    restart,
    configPath,
    config,
  };
}
