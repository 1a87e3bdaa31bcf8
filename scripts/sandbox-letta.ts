// The Letta part of `npm run sandbox -- --scripted --letta`: the real Letta server of the tests
// (test/harness/letta-server.ts: a Python venv in .cache/letta-venv and a private PostgreSQL),
// pointed at the scripted model, with one agent the bot answers `!letta` with by default.
import { join } from "node:path";
import { pino } from "pino";
import { LettaApi } from "../src/letta/api.ts";
import { LETTA_VERSION, ensureLettaInstalled, startLettaServer } from "../test/harness/letta-server.ts";

export const SANDBOX_AGENT = "sandbox-agent";

// The harness's Letta can reach 127.0.0.1 only, so it cannot talk to a provider of the user's.
export const LETTA_NEEDS_SCRIPTED = [
  "sandbox: --letta needs --scripted: `npm run sandbox -- --scripted --letta`.",
  "  The sandbox's Letta server is cut off from the network and answers from the offline scripted model.",
  "  For Letta with a real model, run a Letta server of your own and set letta.baseUrl (README, \"Letta\").",
  "",
].join("\n");

export interface SandboxLetta {
  baseUrl: string;
  agentName: string;
  agentId: string;
  logPath: string;
  /** The bot's configuration for this server: its agent answers rooms that picked none. */
  botEnv: Record<string, string>;
  /** What to write in the room, and what comes back. */
  example: string;
}

export interface SandboxLettaOptions {
  cacheDir: string; // holds the venv, shared with the tests
  workDir: string; // this run's Letta home and letta.log
  modelBaseUrl: string; // the scripted model, with /v1
  say: (line: string) => void;
  rel: (path: string) => string;
  /** Registers how to stop the server; called as soon as it runs. */
  onStarted: (name: string, stop: () => Promise<void>, kill: () => void) => void;
  /** Throws when the sandbox is being stopped, so that no agent is made for nothing. */
  checkpoint: () => void;
}

const secs = (from: number): string => `${((performance.now() - from) / 1000).toFixed(1)} s`;

export async function startSandboxLetta(o: SandboxLettaOptions): Promise<SandboxLetta> {
  // ensureLettaInstalled says nothing when the venv is there already: its first line means an install.
  const tInstall = performance.now();
  let installing = false;
  let ticker: NodeJS.Timeout | undefined;
  await ensureLettaInstalled(o.cacheDir, (line) => {
    if (!installing) {
      installing = true;
      o.say(`first run: installing Letta ${LETTA_VERSION} from PyPI into ${o.rel(join(o.cacheDir, "letta-venv"))} (about 90 s and 1.1 GB; later runs skip this)`);
      ticker = setInterval(() => o.say(`… still installing Letta (${secs(tInstall)})`), 15_000);
    }
    o.say(`letta install │ ${line}`);
  }).finally(() => clearInterval(ticker));
  if (installing) o.say(`Letta installed in ${secs(tInstall)}`);
  o.checkpoint();

  const tStart = performance.now();
  o.say(`starting Letta ${LETTA_VERSION} with its own PostgreSQL (15-40 s)`);
  const server = await startLettaServer({
    cacheDir: o.cacheDir,
    workDir: o.workDir,
    modelBaseUrl: o.modelBaseUrl,
    log: (line) => o.say(`letta │ ${line}`),
  });
  o.onStarted(`letta (pid ${server.pid}) and its postgres`, () => server.stop(), () => server.kill("SIGKILL"));
  o.checkpoint();

  // Made the way `!letta new` makes agents, so it behaves like one a user creates later.
  const model = server.modelHandle("fake-model");
  const embedding = server.embeddingHandle;
  const api = new LettaApi({ baseUrl: server.baseUrl, timeoutMs: 30_000, maxRetries: 2, retryDelayMs: 500, log: pino({ level: "silent" }) });
  const agent = await api.createAgent(SANDBOX_AGENT, model, embedding);
  o.say(`Letta ready at ${server.baseUrl} with agent "${agent.name}" (${agent.id}, ${model}) in ${secs(tStart)}`);
  return {
    baseUrl: server.baseUrl, agentName: agent.name, agentId: agent.id, logPath: join(o.workDir, "letta.log"),
    botEnv: { LETTA_BASE_URL: server.baseUrl, LETTA_DEFAULT_AGENT: agent.name, LETTA_MODEL: model, LETTA_EMBEDDING: embedding },
    example: `!letta say hello   (agent "${agent.name}" on Letta at ${server.baseUrl} answers "Echo: say hello")`,
  };
}
