// Records real event streams of OpenCode and Letta (driven by the scripted model) into
// test/fixtures/{opencode,letta}/<scenario>.jsonl, for replaying into the renderers in unit tests.
//   node --disable-warning=ExperimentalWarning test/harness/record-streams.ts <stack.json> [opencode/<name>|letta/<name> ...]
// <stack.json> is what `node test/harness/dev-stack.ts <dir> --letta` writes. With no names, every
// scenario is recorded.
//
// File format (one JSON value per line):
//  - line 1, a header: {"recorded": ISO date, "server": "opencode-ai <v>" | "letta <v>", "scenario", "prompt"}
//    ("prompt" is the user text sent)
//  - OpenCode: then every event of the server's global event stream (the `payload` the bot's
//    OpencodeConnection dispatches) that belongs to the session under test, from the prompt until
//    the session is idle, in arrival order; `file.*` events (they carry no session) of the
//    recording's directory while the turn ran are kept too. The last line is
//    {"snapshot": <session.messages of that session>}, what the bot loads when a turn ends.
//  - Letta: then every value the client's answer stream yields (`agents.messages.create` with
//    streaming, as LettaApi.sendStreaming sends it), in order. An SSE `event: error` makes the
//    client throw instead of yielding; that one is recorded as {"thrown": {name, status, message, error}},
//    where `error` is the parsed `data:` of that event (an `error_message`) and `message` the
//    client's error message.
//
// The OpenCode scenarios run in their own git repository (/tmp/opencode-record/project), so they
// do not touch the shared workspace; their sessions are deleted afterwards. The `question` scenario
// needs the "question:" script of scripted-model.ts, and `fail` its "fail 500 x2 then 400"; a model
// server started before those scripts existed does not know them, so then a private scripted model
// and OpenCode server are started for those two scenarios (and stopped at the end).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createOpencodeClient, type Event, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { APIError } from "@letta-ai/letta-client";
import { LettaApi } from "../../src/letta/api.ts";
import { createLogger } from "../../src/log.ts";
import { startTestOpencode } from "./opencode.ts";
import { startScriptedModel } from "./scripted-model.ts";
import { repoDir, type StackInfo } from "./stack.ts";

const fixturesDir = join(repoDir, "test", "fixtures");
const recordRoot = "/tmp/opencode-record";
const projectDir = join(recordRoot, "project");

/** A timeout for Promise.race that does not keep the process alive. */
const deadline = (ms: number): Promise<void> => sleep(ms, undefined, { ref: false });
const say = (line: string): void => void process.stdout.write(`${line}\n`);

type Json = Record<string, unknown>;

function writeFixture(kind: "opencode" | "letta", name: string, header: Json, lines: unknown[], secrets: string[]): string {
  const text = [header, ...lines].map((l) => JSON.stringify(l)).join("\n") + "\n";
  for (const s of secrets) if (s.length >= 6 && text.includes(s)) throw new Error(`${kind}/${name}: a secret of the stack would end up in the fixture`);
  const dir = join(fixturesDir, kind);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.jsonl`);
  writeFileSync(file, text);
  return file;
}

function countTypes(lines: unknown[], key: "type" | "message_type"): string {
  const counts = new Map<string, number>();
  for (const l of lines) {
    const o = l as Json;
    const t = typeof o[key] === "string" ? (o[key] as string) : Object.keys(o)[0] ?? "?";
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return [...counts].map(([t, n]) => `${t}×${n}`).join(" ");
}

// ---------------------------------------------------------------- OpenCode

interface GlobalItem { directory?: string; payload?: Event }

interface OcContext {
  client: OpencodeClient;
  sessionID: string;
  events: Event[];
  /** A progress line on stdout. */
  log: (line: string) => void;
}

interface OcScenario {
  name: string;
  prompt: string;
  /** Reacts to each recorded event (answer a permission or question, abort). */
  onEvent?: (event: Event, ctx: OcContext) => void | Promise<void>;
  /** Runs once after the prompt was accepted (e.g. a timer that aborts). */
  afterPrompt?: (ctx: OcContext) => void | Promise<void>;
  timeoutMs?: number;
  /** Needs the scripts added to scripted-model.ts for this recorder ("question:", "fail 500 x2 then 400"). */
  newScripts?: boolean;
}

const opencodeScenarios: OcScenario[] = [
  { name: "hello", prompt: "hello there" },
  { name: "reasoning", prompt: "please reason about the colour blue" },
  {
    name: "bash",
    prompt: "bash: echo hi",
    onEvent: async (e, ctx) => {
      if (e.type !== "permission.asked") return;
      const res = await ctx.client.permission.reply({ requestID: e.properties.id, reply: "once" });
      if (res.error) throw new Error(`permission.reply: ${JSON.stringify(res.error)}`);
    },
  },
  {
    name: "bash-rejected",
    prompt: "bash: rm -rf ./build",
    onEvent: async (e, ctx) => {
      if (e.type !== "permission.asked") return;
      const res = await ctx.client.permission.reply({ requestID: e.properties.id, reply: "reject" });
      if (res.error) throw new Error(`permission.reply: ${JSON.stringify(res.error)}`);
    },
  },
  { name: "write", prompt: "create hello.py" },
  // Two HTTP 500 (OpenCode retries each), then an HTTP 400 (not retried): session.error. The
  // number makes the text new, so the model's count of answers starts again on every recording.
  { name: "fail", prompt: `fail 500 x2 then 400 #${Date.now()}`, newScripts: true },
  {
    // HTTP 500 for ever: OpenCode retries with growing delays (2 s, 4 s, 8 s, …) and never gives up
    // by itself, so the recording aborts it after the third retry (or 60 s), as a user would.
    name: "fail-abort",
    prompt: "fail",
    timeoutMs: 90_000,
    afterPrompt: (ctx) => {
      const t = setTimeout(() => void ctx.client.session.abort({ sessionID: ctx.sessionID }), 60_000);
      t.unref();
    },
    onEvent: async (e, ctx) => {
      if (e.type !== "session.status" || e.properties.status.type !== "retry" || e.properties.status.attempt < 3) return;
      ctx.log("third retry: aborting");
      await ctx.client.session.abort({ sessionID: ctx.sessionID });
    },
  },
  // HTTP 400 is not retried: session.error at once.
  { name: "fail-400", prompt: "fail 400" },
  {
    name: "abort",
    prompt: "slow",
    onEvent: async (e, ctx) => {
      if (e.type !== "message.part.delta") return;
      if (ctx.events.filter((x) => x.type === "message.part.delta").length !== 5) return;
      ctx.log("5 deltas: aborting");
      await ctx.client.session.abort({ sessionID: ctx.sessionID });
    },
  },
  {
    name: "question",
    prompt: "question: Deploy to production now?",
    newScripts: true,
    onEvent: async (e, ctx) => {
      if (e.type !== "question.asked") return;
      const res = await ctx.client.question.reply({ requestID: e.properties.id, answers: [["Yes"]] });
      if (res.error) throw new Error(`question.reply: ${JSON.stringify(res.error)}`);
    },
  },
];

function prepareProject(): void {
  rmSync(recordRoot, { recursive: true, force: true });
  mkdirSync(projectDir, { recursive: true });
  writeFileSync(join(projectDir, "README.md"), "# Recording project\n");
  // Fixed names and dates: the root commit, and so OpenCode's project id, is the same on every recording.
  const env = { ...process.env, GIT_AUTHOR_DATE: "2026-01-01T00:00:00Z", GIT_COMMITTER_DATE: "2026-01-01T00:00:00Z" };
  const git = (...args: string[]): void => void execFileSync("git", args, { cwd: projectDir, stdio: "ignore", env });
  git("init", "-q", "-b", "main");
  git("add", "README.md");
  git("-c", "user.name=Recorder", "-c", "user.email=recorder@localhost", "commit", "-q", "-m", "initial");
}

/** Whether the model server knows the scripts added for the recorder: asks it directly, as OpenCode would. */
async function modelHasNewScripts(modelBaseUrl: string): Promise<boolean> {
  const res = await fetch(`${modelBaseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "fake-model", messages: [{ role: "user", content: "question: probe?" }] }),
  });
  const body = (await res.json()) as { choices?: { message?: { tool_calls?: { function?: { name?: string } }[] } }[] };
  return body.choices?.[0]?.message?.tool_calls?.[0]?.function?.name === "question";
}

class OpencodeRecorder {
  readonly client: OpencodeClient;
  private readonly abort = new AbortController();
  private listener: ((item: GlobalItem) => void) | undefined;
  private loop: Promise<void> | undefined;

  readonly url: string;

  constructor(url: string) {
    this.url = url;
    this.client = createOpencodeClient({ baseUrl: url, directory: projectDir });
  }

  async version(): Promise<string> {
    const res = await fetch(new URL("/global/health", this.url));
    return ((await res.json()) as { version: string }).version;
  }

  async start(): Promise<void> {
    const { stream } = await this.client.global.event({ signal: this.abort.signal, sseMaxRetryAttempts: 1 });
    let connected!: () => void;
    const ready = new Promise<void>((r) => (connected = r));
    this.loop = (async () => {
      try {
        for await (const item of stream) {
          connected();
          this.listener?.(item as GlobalItem);
        }
      } catch (err) {
        if (!this.abort.signal.aborted) throw err;
      }
    })();
    await Promise.race([ready, deadline(20_000).then(() => { throw new Error("no event from OpenCode in 20 s"); })]);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop?.catch(() => {});
  }

  async record(s: OcScenario): Promise<{ events: Event[]; snapshot: unknown }> {
    const created = await this.client.session.create({ title: `record ${s.name}` });
    if (!created.data) throw new Error(`session.create: ${JSON.stringify(created.error)}`);
    const sessionID = created.data.id;
    const events: Event[] = [];
    const ctx: OcContext = { client: this.client, sessionID, events, log: (l) => say(`  opencode/${s.name}: ${l}`) };
    let failed: unknown;
    let idle!: () => void;
    const idleP = new Promise<void>((r) => (idle = r));
    let sawStatusIdle = false;
    let sawCreated!: () => void;
    const createdP = new Promise<void>((r) => (sawCreated = r));
    // The recording starts with the prompt: events of the session's creation are left out.
    let recording = false;
    let done = false;
    this.listener = (item) => {
      const e = item.payload;
      if (!e || typeof e.type !== "string" || typeof e.properties !== "object" || e.properties === null) return;
      const props = e.properties as Json;
      const mine = props.sessionID === sessionID || (!("sessionID" in props) && e.type.startsWith("file.") && item.directory === projectDir);
      if (!mine) return;
      if (e.type === "session.created") sawCreated();
      if (!recording || done) return;
      events.push(e);
      if (s.onEvent) Promise.resolve(s.onEvent(e, ctx)).catch((err: unknown) => { failed = err; idle(); });
      if (e.type === "session.idle") {
        done = true;
        idle();
      }
      if (e.type === "session.status" && e.properties.status.type === "idle" && !sawStatusIdle) {
        sawStatusIdle = true;
        // session.idle normally follows at once; do not wait for it forever.
        setTimeout(() => {
          done = true;
          idle();
        }, 1000).unref();
      }
    };
    try {
      await Promise.race([createdP, deadline(5000)]);
      await sleep(300); // the session.updated that follows the creation
      recording = true;
      const sent = await this.client.session.promptAsync({ sessionID, parts: [{ type: "text", text: s.prompt }] });
      if (sent.error) throw new Error(`promptAsync: ${JSON.stringify(sent.error)}`);
      await s.afterPrompt?.(ctx);
      const timeoutMs = s.timeoutMs ?? 60_000;
      const timedOut = await Promise.race([idleP.then(() => false), deadline(timeoutMs).then(() => true)]);
      if (failed) throw failed;
      if (timedOut) throw new Error(`opencode/${s.name}: not idle after ${timeoutMs} ms (${events.length} events)`);
    } finally {
      this.listener = undefined;
    }
    const messages = await this.client.session.messages({ sessionID });
    if (messages.error) throw new Error(`session.messages: ${JSON.stringify(messages.error)}`);
    await this.client.session.delete({ sessionID }).catch(() => {}); // leaves no trace on a shared server
    return { events, snapshot: messages.data };
  }
}

async function recordOpencode(stack: StackInfo, names: string[], secrets: string[]): Promise<void> {
  const todo = opencodeScenarios.filter((s) => names.length === 0 || names.includes(`opencode/${s.name}`));
  if (!todo.length) return;
  prepareProject();
  const shared = new OpencodeRecorder(stack.opencode.url);
  await shared.start();
  const version = await shared.version();
  let sharedHasNewScripts: boolean | undefined;
  let privateStack: { recorder: OpencodeRecorder; stop: () => Promise<void> } | undefined;
  const recorderFor = async (s: OcScenario): Promise<OpencodeRecorder> => {
    if (!s.newScripts) return shared;
    sharedHasNewScripts ??= await modelHasNewScripts(stack.model.baseUrl);
    if (sharedHasNewScripts) return shared;
    if (!privateStack) {
      say("  the shared model predates the recorder's scripts: starting a private scripted model and OpenCode server");
      const model = await startScriptedModel();
      const oc = await startTestOpencode({ workspaceDir: projectDir, stateDir: join(recordRoot, "opencode-state"), modelBaseUrl: model.baseUrl });
      const recorder = new OpencodeRecorder(oc.url);
      await recorder.start();
      privateStack = { recorder, stop: async () => { await recorder.stop(); await oc.stop(); await model.close(); } };
    }
    return privateStack.recorder;
  };
  try {
    for (const s of todo) {
      const t0 = Date.now();
      const recorder = await recorderFor(s);
      const { events, snapshot } = await recorder.record(s);
      const header = { recorded: new Date().toISOString(), server: `opencode-ai ${recorder === shared ? version : await recorder.version()}`, scenario: s.name, prompt: s.prompt };
      const file = writeFixture("opencode", s.name, header, [...events, { snapshot }], secrets);
      say(`opencode/${s.name}: ${events.length} events in ${Date.now() - t0} ms → ${file}\n  ${countTypes(events, "type")}`);
    }
  } finally {
    await shared.stop();
    await privateStack?.stop();
  }
}

// ---------------------------------------------------------------- Letta

interface LettaScenario { name: string; prompt: string }

const lettaScenarios: LettaScenario[] = [
  // "reason" makes the scripted model stream reasoning_content before the text.
  { name: "hello", prompt: "[Alice] hello there, give a reason" },
  { name: "tool", prompt: "[Alice] remember: likes tests" },
  // HTTP 500: Letta's OpenAI client tries 3 times, then an error event.
  { name: "error", prompt: "[Alice] fail" },
  // HTTP 400: not retried.
  { name: "error-400", prompt: "[Alice] fail 400" },
];

async function recordLetta(stack: StackInfo, names: string[], secrets: string[]): Promise<void> {
  const todo = lettaScenarios.filter((s) => names.length === 0 || names.includes(`letta/${s.name}`));
  if (!todo.length) return;
  if (!stack.letta) throw new Error("the stack has no Letta server (start it with --letta)");
  const api = new LettaApi({ baseUrl: stack.letta.baseUrl, timeoutMs: 120_000, maxRetries: 0, retryDelayMs: 1000, log: createLogger("silent") });
  const { version } = await api.health();
  for (const s of todo) {
    const t0 = Date.now();
    const agent = await api.createAgent(`record-${s.name}-${Date.now()}`, stack.letta.model, stack.letta.embedding);
    const lines: unknown[] = [];
    try {
      const stream = await api.sendStreaming(agent.id, s.prompt, `otid-record-${s.name}`, { signal: AbortSignal.timeout(120_000) });
      try {
        for await (const event of stream) lines.push(event);
      } catch (err) {
        if (!(err instanceof APIError)) throw err;
        lines.push({ thrown: { name: err.constructor.name, status: err.status ?? null, message: err.message, error: err.error ?? null } });
      }
    } finally {
      await api.client.agents.delete(agent.id).catch(() => {});
    }
    const header = { recorded: new Date().toISOString(), server: `letta ${version}`, scenario: s.name, prompt: s.prompt };
    const file = writeFixture("letta", s.name, header, lines, secrets);
    say(`letta/${s.name}: ${lines.length} events in ${Date.now() - t0} ms → ${file}\n  ${countTypes(lines, "message_type")}`);
  }
}

// ---------------------------------------------------------------- main

const [stackFile, ...names] = process.argv.slice(2);
if (!stackFile) {
  process.stderr.write("usage: node test/harness/record-streams.ts <stack.json> [opencode/<name>|letta/<name> ...]\n");
  process.exit(2);
}
const stack = JSON.parse(readFileSync(stackFile, "utf8")) as StackInfo;
const secrets = [stack.synapse.sharedSecret];
const known = [...opencodeScenarios.map((s) => `opencode/${s.name}`), ...lettaScenarios.map((s) => `letta/${s.name}`)];
const unknown = names.filter((n) => !known.includes(n));
if (unknown.length) {
  process.stderr.write(`unknown scenario(s): ${unknown.join(", ")}; known: ${known.join(", ")}\n`);
  process.exit(2);
}
await recordOpencode(stack, names, secrets);
await recordLetta(stack, names, secrets);
