import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startLettaServer, type LettaServer } from "./letta-server.ts";
import { startTestOpencode, type TestOpencode } from "./opencode.ts";
import { startScriptedModel, type ScriptedModel } from "./scripted-model.ts";
import { startSynapse, type SynapseHandle } from "./synapse.ts";

export const repoDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const cacheDir = join(repoDir, ".cache");

/** What test files (separate processes) need to know about the servers the runner booted. */
export interface StackInfo {
  synapse: { baseUrl: string; sharedSecret: string };
  opencode: { url: string; pid: number };
  model: { baseUrl: string; controlUrl: string };
  /** Only when a Letta test file was selected: the real Letta server and the handles it accepts. */
  letta?: { baseUrl: string; model: string; embedding: string };
  workspaceDir: string;
  workDir: string;
}

export interface Stack {
  info: StackInfo;
  synapse: SynapseHandle;
  opencode: TestOpencode;
  model: ScriptedModel;
  letta: LettaServer | undefined;
  timings: Array<[string, number]>;
  stop(): Promise<void>;
}

/** Boots Synapse, the scripted model and OpenCode in parallel where they do not depend on each other. */
export async function bootStack(
  workDir: string,
  opts: { rateLimits?: "raised" | "default"; log?: (l: string) => void; letta?: boolean } = {},
): Promise<Stack> {
  const timings: Array<[string, number]> = [];
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const v = await fn();
    timings.push([name, performance.now() - t0]);
    return v;
  };
  const workspaceDir = join(workDir, "workspace");
  mkdirSync(workspaceDir, { recursive: true });
  const log = opts.log ?? ((): void => {});
  const synapseP = timed("synapse (install check + boot)", () =>
    startSynapse({ cacheDir, workDir, rateLimits: opts.rateLimits ?? "raised", log }),
  );
  const model = await timed("scripted model", () => startScriptedModel());
  // Letta (15-40 s, plus about 90 s the very first time for its venv) boots beside the rest.
  const lettaP = opts.letta
    ? timed("letta (install check + boot)", () => startLettaServer({ cacheDir, workDir: join(workDir, "letta"), modelBaseUrl: model.baseUrl, log }))
    : Promise.resolve(undefined);
  lettaP.catch(() => {}); // awaited below; do not let an early failure go unhandled meanwhile
  const opencode = await timed("opencode serve", () =>
    startTestOpencode({ workspaceDir, stateDir: join(workDir, "opencode-state"), modelBaseUrl: model.baseUrl }),
  );
  const synapse = await synapseP;
  const letta = await lettaP;
  const info: StackInfo = {
    synapse: { baseUrl: synapse.baseUrl, sharedSecret: synapse.sharedSecret },
    opencode: { url: opencode.url, pid: opencode.pid },
    model: { baseUrl: model.baseUrl, controlUrl: model.baseUrl.replace(/\/v1$/, "") },
    ...(letta ? { letta: { baseUrl: letta.baseUrl, model: letta.modelHandle("fake-model"), embedding: letta.embeddingHandle } } : {}),
    workspaceDir,
    workDir,
  };
  return {
    info,
    synapse,
    opencode,
    model,
    letta,
    timings,
    stop: async () => {
      await Promise.allSettled([opencode.stop(), synapse.stop(), model.close(), letta?.stop()]);
    },
  };
}

export function writeStackInfo(path: string, info: StackInfo): void {
  writeFileSync(path, JSON.stringify(info, null, 2));
}

export function loadStackInfo(): StackInfo {
  const path = process.env.TEST_STACK_FILE;
  if (!path) throw new Error("TEST_STACK_FILE is not set: run the end-to-end tests through `npm test`, which boots the servers");
  return JSON.parse(readFileSync(path, "utf8")) as StackInfo;
}
