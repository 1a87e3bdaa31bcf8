// Self-check of the test harness against a real OpenCode server:
//   node --disable-warning=ExperimentalWarning --test test/harness/opencode.selfcheck.ts
// Set SELFCHECK_DUMP=/some/dir to write the observed event sequences there.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import type { Event, OpencodeClient, Part } from "@opencode-ai/sdk/v2";
import { expectedReply, startScriptedModel } from "./scripted-model.ts";
import type { ScriptedModel } from "./scripted-model.ts";
import { startTestOpencode } from "./opencode.ts";
import type { TestOpencode } from "./opencode.ts";

interface Seen { at: number; event: Event }

/** Collects events from one subscription and lets tests wait for them. */
class EventLog {
  readonly events: Seen[] = [];
  private waiters: (() => void)[] = [];
  readonly abort = new AbortController();
  ended = false;

  async subscribe(client: OpencodeClient): Promise<void> {
    const { stream } = await client.event.subscribe(undefined, { signal: this.abort.signal, sseMaxRetryAttempts: 1 });
    void (async () => {
      try {
        for await (const event of stream) this.push(event as Event);
      } catch { /* aborted */ }
      this.ended = true;
    })();
    await this.waitFor((e) => e.type === "server.connected", 0, 5000);
  }

  private push(event: Event) {
    this.events.push({ at: Date.now(), event });
    for (const w of this.waiters.splice(0)) w();
  }

  async waitFor(pred: (e: Event) => boolean, from: number, timeoutMs = 20_000): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(from).find((s) => pred(s.event));
      if (hit) return hit.event;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; last events: ${this.events.slice(-15).map((s) => s.event.type).join(", ")}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }
}

let root = "";
let model: ScriptedModel;
let server: TestOpencode;
let client: OpencodeClient;
let log: EventLog;
let sessionID = "";
const timings: Record<string, number> = {};
const dumps: Record<string, string[]> = {};

function workspace() { return path.join(root, "ws"); }

/** Sends a prompt, answers permission requests with `reply`, waits for idle; returns the events of this turn. */
async function turn(name: string, text: string, reply?: "once" | "reject"): Promise<Event[]> {
  const from = log.events.length;
  const t0 = Date.now();
  const sent = await client.session.promptAsync({ sessionID, parts: [{ type: "text", text }] });
  assert.equal(sent.error, undefined);
  if (reply) {
    const asked = await log.waitFor((e) => e.type === "permission.asked" && e.properties.sessionID === sessionID, from);
    assert.equal(asked.type, "permission.asked");
    if (asked.type === "permission.asked") {
      timings[`${name}: permission.asked`] = Date.now() - t0;
      const r = await client.permission.reply({ requestID: asked.properties.id, reply });
      assert.equal(r.error, undefined);
    }
  }
  await log.waitFor((e) => e.type === "session.idle" && e.properties.sessionID === sessionID, from, 30_000);
  timings[`${name}: idle`] = Date.now() - t0;
  const seen = log.events.slice(from);
  const firstDelta = seen.find((s) => s.event.type === "message.part.delta");
  if (firstDelta) timings[`${name}: first delta`] = firstDelta.at - t0;
  dumps[name] = seen.map((s) => `${String(s.at - t0).padStart(5)} ${describe(s.event)}`);
  return seen.map((s) => s.event);
}

function describe(e: Event): string {
  switch (e.type) {
    case "message.part.delta": return `${e.type} ${e.properties.field} ${JSON.stringify(e.properties.delta)}`;
    case "message.part.updated": {
      const p = e.properties.part;
      return `${e.type} ${p.type}${p.type === "tool" ? ` ${p.tool} ${p.state.status}` : p.type === "text" ? ` ${JSON.stringify(p.text)}` : ""}`;
    }
    case "message.updated": return `${e.type} ${e.properties.info.role}${e.properties.info.role === "assistant" ? ` finish=${e.properties.info.finish}` : ""}`;
    case "session.status": return `${e.type} ${e.properties.status.type}`;
    default: return e.type;
  }
}

/** The streamed text (deltas of text parts) and the final text parts of the assistant messages in `events`. */
function texts(events: Event[]): { streamed: string; final: string } {
  const textParts = new Map<string, string>();
  for (const e of events) if (e.type === "message.part.updated" && e.properties.part.type === "text") textParts.set(e.properties.part.id, e.properties.part.text);
  const assistantMsgs = new Set(events.flatMap((e) => (e.type === "message.updated" && e.properties.info.role === "assistant" ? [e.properties.info.id] : [])));
  let streamed = "";
  for (const e of events) if (e.type === "message.part.delta" && textParts.has(e.properties.partID) && assistantMsgs.has(e.properties.messageID)) streamed += e.properties.delta;
  const final = events.flatMap((e) => (e.type === "message.part.updated" && e.properties.part.type === "text" && assistantMsgs.has(e.properties.part.messageID) ? [e.properties.part] : []));
  const lastById = new Map<string, Part>();
  for (const p of final) lastById.set(p.id, p);
  return { streamed, final: [...lastById.values()].map((p) => (p.type === "text" ? p.text : "")).join("") };
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), "oc-selfcheck-"));
  model = await startScriptedModel();
  const t0 = Date.now();
  server = await startTestOpencode({ workspaceDir: workspace(), stateDir: path.join(root, "state"), modelBaseUrl: model.baseUrl });
  timings["cold start (spawn → healthy)"] = Date.now() - t0;
  client = createOpencodeClient({ baseUrl: server.url, directory: workspace() });
  log = new EventLog();
  await log.subscribe(client);
  const created = await client.session.create({ title: "selfcheck" });
  assert.ok(created.data, JSON.stringify(created.error));
  sessionID = created.data.id;
});

after(async () => {
  log?.abort.abort();
  await server?.stop();
  await model?.close();
  console.log(Object.entries(timings).map(([k, v]) => `timing ${k}: ${v} ms`).join("\n"));
  const dumpDir = process.env.SELFCHECK_DUMP;
  if (dumpDir) for (const [name, lines] of Object.entries(dumps)) writeFileSync(path.join(dumpDir, `${name.replace(/\W+/g, "_")}.txt`), lines.join("\n") + "\n");
  if (root) rmSync(root, { recursive: true, force: true });
});

test("write tool creates hello.py and the deltas match the final text", async () => {
  const events = await turn("hello.py (cold)", "Create hello.py that prints hello");
  assert.equal(readFileSync(path.join(workspace(), "hello.py"), "utf8"), 'print("hello")\n');
  const tools = events.flatMap((e) => (e.type === "message.part.updated" && e.properties.part.type === "tool" ? [e.properties.part] : []));
  assert.ok(tools.some((p) => p.type === "tool" && p.tool === "write" && p.state.status === "completed"));
  const { streamed, final } = texts(events);
  assert.equal(final, expectedReply("Create hello.py that prints hello"));
  assert.equal(streamed, final);
});

test("echo reply is exact (attribution stripped)", async () => {
  const text = "[Alice] What is the answer?";
  const events = await turn("echo (warm)", text);
  const { streamed, final } = texts(events);
  assert.equal(final, "Echo: What is the answer?");
  assert.equal(final, expectedReply(text));
  assert.equal(streamed, final);
  const done = events.findLast((e) => e.type === "message.updated" && e.properties.info.role === "assistant");
  assert.ok(done?.type === "message.updated" && done.properties.info.role === "assistant");
  assert.equal(done.properties.info.providerID, "fake");
  assert.equal(done.properties.info.modelID, "fake-model");
  assert.ok(done.properties.info.tokens.output > 0 && done.properties.info.time.completed);
});

test("bash asks for permission; replying once runs it", async () => {
  const events = await turn("bash permission", "bash: echo hi there", "once");
  assert.ok(events.some((e) => e.type === "permission.replied"));
  assert.equal(texts(events).final, "Command finished: hi there");
});

test("long reply after a reasoning part", async () => {
  const events = await turn("long+reason", "reason then long 30");
  assert.equal(texts(events).final, expectedReply("long 30"));
  assert.ok(events.some((e) => e.type === "message.part.updated" && e.properties.part.type === "reasoning"));
});

test("model records requests (readable over HTTP too)", async () => {
  const res = await fetch(new URL("/_script/requests", model.baseUrl));
  const recorded = (await res.json()) as unknown[];
  assert.equal(recorded.length, model.requests().length);
  assert.ok(model.requests().some((r) => r.kind === "chat" && r.hasToolResult));
});

test("restart comes back on the same port and a new subscription works", async () => {
  const url = server.url;
  const oldPid = server.pid;
  server.kill("SIGKILL");
  assert.equal(await server.exited, null);
  const t0 = Date.now();
  await server.restart();
  timings["restart (exit → healthy)"] = Date.now() - t0;
  assert.equal(server.url, url);
  assert.notEqual(server.pid, oldPid);
  log.abort.abort();
  log = new EventLog();
  await log.subscribe(client);
  const events = await turn("echo after restart", "still there?");
  assert.equal(texts(events).final, "Echo: still there?");
});
