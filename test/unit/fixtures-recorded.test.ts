import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { Event, Part } from "@opencode-ai/sdk/v2";

// Checks the streams recorded by test/harness/record-streams.ts, so that a broken re-recording
// is caught here rather than in the renderer tests that replay them.

const dir = join(import.meta.dirname, "../fixtures");

interface Header { recorded: string; server: string; scenario: string; prompt: string }
type Obj = Record<string, unknown>;

function load(kind: "opencode" | "letta", name: string): { header: Header; lines: Obj[] } {
  const text = readFileSync(join(dir, kind, `${name}.jsonl`), "utf8");
  assert.ok(text.endsWith("\n"), `${kind}/${name}: ends with a newline`);
  const [header, ...lines] = text.trimEnd().split("\n").map((l, i) => {
    try {
      return JSON.parse(l) as Obj;
    } catch (err) {
      throw new Error(`${kind}/${name}.jsonl line ${i + 1} is no JSON`, { cause: err });
    }
  });
  assert.ok(header);
  return { header: header as unknown as Header, lines };
}

function checkHeader(kind: "opencode" | "letta", name: string, header: Header): void {
  assert.equal(header.scenario, name);
  assert.ok(!Number.isNaN(Date.parse(header.recorded)) && header.recorded.endsWith("Z"), `recorded: ${header.recorded}`);
  assert.match(header.server, kind === "opencode" ? /^opencode-ai \d+\.\d+\.\d+$/ : /^letta \d+\.\d+\.\d+$/);
  assert.equal(typeof header.prompt, "string");
}

const names = (kind: string): string[] => readdirSync(join(dir, kind)).filter((f) => f.endsWith(".jsonl")).map((f) => f.slice(0, -6)).sort();

// ---------------------------------------------------------------- OpenCode

interface OcFixture { header: Header; events: Event[]; snapshot: { info: Obj; parts: Part[] }[] }

function opencode(name: string): OcFixture {
  const { header, lines } = load("opencode", name);
  checkHeader("opencode", name, header);
  const last = lines.pop();
  assert.ok(last && Array.isArray(last.snapshot), `${name}: the last line is {"snapshot": [...]}`);
  return { header, events: lines as unknown as Event[], snapshot: last.snapshot as OcFixture["snapshot"] };
}

const types = (events: Event[]): string[] => events.map((e) => e.type);
const partsOf = (events: Event[]): Part[] => events.flatMap((e) => (e.type === "message.part.updated" ? [e.properties.part] : []));
const toolStates = (events: Event[], tool: string): string[] =>
  partsOf(events).flatMap((p) => (p.type === "tool" && p.tool === tool ? [p.state.status] : []));
const statuses = (events: Event[]): string[] => events.flatMap((e) => (e.type === "session.status" ? [e.properties.status.type] : []));
const deltaText = (events: Event[]): string => events.map((e) => (e.type === "message.part.delta" ? e.properties.delta : "")).join("");
const snapshotText = (f: OcFixture): string =>
  f.snapshot.filter((m) => m.info.role === "assistant").flatMap((m) => m.parts).map((p) => (p.type === "text" ? p.text : "")).join("");
const errorsOf = (events: Event[]): { name?: string; data?: Obj }[] =>
  events.flatMap((e) => (e.type === "session.error" ? [(e.properties.error ?? {}) as { name?: string; data?: Obj }] : []));

const expectedOpencode = ["abort", "bash", "bash-rejected", "fail", "fail-400", "fail-abort", "hello", "question", "reasoning", "write"];

test("the recorded OpenCode streams are all there", () => {
  assert.deepEqual(names("opencode"), expectedOpencode);
});

test("every OpenCode stream belongs to one session, starts with the prompt and ends idle", () => {
  for (const name of expectedOpencode) {
    const f = opencode(name);
    assert.ok(f.events.length > 5, name);
    for (const e of f.events) assert.ok(typeof e.type === "string" && typeof e.id === "string" && e.properties && typeof e.properties === "object", `${name}: ${JSON.stringify(e)}`);
    const sessions = new Set(f.events.flatMap((e) => ("sessionID" in e.properties ? [e.properties.sessionID] : [])));
    assert.equal(sessions.size, 1, `${name}: sessions ${[...sessions].join(", ")}`);
    const [sessionID] = sessions;
    assert.ok(f.events.every((e) => !("sessionID" in e.properties) || e.properties.sessionID === sessionID));
    assert.equal(f.events.at(-1)?.type, "session.idle", name);
    assert.ok(statuses(f.events).includes("busy") && statuses(f.events).at(-1) === "idle", `${name}: ${statuses(f.events).join(" ")}`);
    // The user's prompt is part of the recording, and the server's record has the same session.
    const userText = partsOf(f.events).find((p) => p.type === "text" && p.text === f.header.prompt);
    assert.ok(userText, `${name}: the prompt's text part`);
    assert.ok(f.snapshot.length >= 2 && f.snapshot.every((m) => m.info.sessionID === sessionID), name);
    assert.equal(f.snapshot[0]?.info.role, "user");
    assert.equal(types(f.events).includes("session.created"), false, `${name}: the session's creation is not part of the turn`);
  }
});

test("opencode/hello: a streamed text answer", () => {
  const f = opencode("hello");
  assert.equal(deltaText(f.events), "Echo: hello there");
  assert.equal(snapshotText(f), "Echo: hello there");
  assert.ok(partsOf(f.events).some((p) => p.type === "step-finish" && p.reason === "stop"));
  assert.deepEqual(errorsOf(f.events), []);
});

test("opencode/reasoning: reasoning parts before the text", () => {
  const f = opencode("reasoning");
  const parts = partsOf(f.events);
  const reasoning = parts.findIndex((p) => p.type === "reasoning");
  const text = parts.findIndex((p) => p.type === "text" && p.messageID !== parts[0]?.messageID);
  assert.ok(reasoning >= 0 && text > reasoning, `reasoning at ${reasoning}, text at ${text}`);
  assert.ok(snapshotText(f).startsWith("Echo: please reason"));
});

test("opencode/bash: asked, allowed once, run to completion", () => {
  const f = opencode("bash");
  const asked = f.events.find((e) => e.type === "permission.asked");
  assert.ok(asked?.type === "permission.asked");
  assert.equal(asked.properties.permission, "bash");
  assert.deepEqual(asked.properties.patterns, ["echo hi"]);
  assert.ok(asked.properties.tool?.callID);
  const replied = f.events.find((e) => e.type === "permission.replied");
  assert.ok(replied?.type === "permission.replied");
  assert.equal(replied.properties.requestID, asked.properties.id);
  assert.equal(replied.properties.reply, "once");
  const states = toolStates(f.events, "bash");
  assert.equal(states[0], "pending");
  assert.equal(states.at(-1), "completed");
  const done = partsOf(f.events).findLast((p) => p.type === "tool" && p.tool === "bash");
  assert.ok(done?.type === "tool" && done.state.status === "completed");
  assert.match(done.state.output, /hi/);
  assert.equal(snapshotText(f), "Command finished: hi");
});

test("opencode/bash-rejected: the rejected tool part ends in error, with no session.error", () => {
  const f = opencode("bash-rejected");
  const replied = f.events.find((e) => e.type === "permission.replied");
  assert.ok(replied?.type === "permission.replied" && replied.properties.reply === "reject");
  const last = partsOf(f.events).findLast((p) => p.type === "tool");
  assert.ok(last?.type === "tool" && last.state.status === "error");
  assert.match(last.state.error, /rejected permission/);
  assert.deepEqual(errorsOf(f.events), []);
});

test("opencode/write: the write tool, file.edited and a patch part", () => {
  const f = opencode("write");
  assert.equal(toolStates(f.events, "write").at(-1), "completed");
  const edited = f.events.find((e) => e.type === "file.edited");
  assert.ok(edited?.type === "file.edited" && edited.properties.file.endsWith("/hello.py"));
  const patch = partsOf(f.events).find((p) => p.type === "patch");
  assert.ok(patch?.type === "patch" && patch.files.some((file) => file.endsWith("/hello.py")));
  assert.equal(snapshotText(f), "Created hello.py.");
});

test("opencode/fail: retries (session.status retry), then session.error", () => {
  const f = opencode("fail");
  const retries = f.events.flatMap((e) => (e.type === "session.status" && e.properties.status.type === "retry" ? [e.properties.status] : []));
  assert.deepEqual(retries.map((r) => r.attempt), [1, 2]);
  for (const r of retries) assert.ok(r.message && r.next > 0);
  const errors = errorsOf(f.events);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.name, "APIError");
  assert.equal(errors[0]?.data?.statusCode, 400);
  assert.ok(types(f.events).indexOf("session.error") > f.events.findIndex((e) => e.type === "session.status" && e.properties.status.type === "retry"));
});

test("opencode/fail-abort: retries, then the abort ends the turn without a session.error", () => {
  const f = opencode("fail-abort");
  assert.ok(statuses(f.events).filter((s) => s === "retry").length >= 3);
  assert.deepEqual(errorsOf(f.events), []);
});

test("opencode/fail-400: an error that is not retried", () => {
  const f = opencode("fail-400");
  assert.equal(statuses(f.events).includes("retry"), false);
  const errors = errorsOf(f.events);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.name, "APIError");
  assert.equal(errors[0]?.data?.isRetryable, false);
});

test("opencode/abort: some text streamed, then MessageAbortedError", () => {
  const f = opencode("abort");
  assert.ok(deltaText(f.events).startsWith("slow1 slow2"));
  assert.deepEqual(errorsOf(f.events).map((e) => e.name), ["MessageAbortedError"]);
});

test("opencode/question: asked, answered, and the tool completes", () => {
  const f = opencode("question");
  const asked = f.events.find((e) => e.type === "question.asked");
  assert.ok(asked?.type === "question.asked");
  assert.equal(asked.properties.questions[0]?.question, "Deploy to production now?");
  assert.deepEqual(asked.properties.questions[0]?.options.map((o) => o.label), ["Yes", "No"]);
  const replied = f.events.find((e) => e.type === "question.replied");
  assert.ok(replied?.type === "question.replied");
  assert.equal(replied.properties.requestID, asked.properties.id);
  assert.deepEqual(replied.properties.answers, [["Yes"]]);
  assert.equal(toolStates(f.events, "question").at(-1), "completed");
});

// ---------------------------------------------------------------- Letta

function letta(name: string): { header: Header; lines: Obj[]; kinds: string[] } {
  const { header, lines } = load("letta", name);
  checkHeader("letta", name, header);
  const kinds = lines.map((l) => (typeof l.message_type === "string" ? l.message_type : Object.keys(l)[0] ?? "?"));
  return { header, lines, kinds };
}

const expectedLetta = ["error", "error-400", "hello", "tool"];

test("the recorded Letta streams are all there, each starting with a ping", () => {
  assert.deepEqual(names("letta"), expectedLetta);
  for (const name of expectedLetta) assert.equal(letta(name).kinds[0], "ping", name);
});

test("letta/hello: reasoning, then the answer in pieces of one message", () => {
  const { lines, kinds } = letta("hello");
  assert.ok(kinds.indexOf("reasoning_message") < kinds.indexOf("assistant_message"));
  const answer = lines.filter((l) => l.message_type === "assistant_message");
  assert.equal(new Set(answer.map((l) => l.id)).size, 1);
  assert.equal(answer.map((l) => l.content).join(""), "Echo: hello there, give a reason");
  assert.deepEqual(kinds.slice(-2), ["stop_reason", "usage_statistics"]);
  assert.equal(lines.at(-2)?.stop_reason, "end_turn");
});

test("letta/tool: a tool call, its return, then the answer", () => {
  const { lines, kinds } = letta("tool");
  const calls = lines.filter((l) => l.message_type === "tool_call_message");
  assert.ok(calls.length > 0);
  assert.equal((calls[0]?.tool_call as Obj).name, "memory_insert");
  const args = calls.map((c) => (c.tool_call as Obj).arguments ?? "").join("");
  assert.deepEqual(JSON.parse(args), { label: "human", new_string: "likes tests" });
  const ret = lines.find((l) => l.message_type === "tool_return_message");
  assert.ok(ret);
  assert.equal(ret.status, "success");
  assert.equal(ret.tool_call_id, (calls[0]?.tool_call as Obj).tool_call_id);
  assert.ok(kinds.lastIndexOf("tool_call_message") < kinds.indexOf("tool_return_message"));
  assert.ok(kinds.indexOf("tool_return_message") < kinds.indexOf("assistant_message"));
  assert.equal(lines.filter((l) => l.message_type === "assistant_message").map((l) => l.content).join(""), "Noted: likes tests");
  assert.equal(lines.find((l) => l.message_type === "stop_reason")?.stop_reason, "end_turn");
});

test("letta/error and error-400: stop_reason llm_api_error, then the error event the client throws", () => {
  for (const [name, code] of [["error", "500"], ["error-400", "400"]] as const) {
    const { lines, kinds } = letta(name);
    assert.deepEqual(kinds, ["ping", "stop_reason", "thrown"], name);
    assert.equal(lines[1]?.stop_reason, "llm_api_error");
    const thrown = lines[2]?.thrown as { name: string; status: number | null; error: Obj };
    assert.equal(thrown.name, "APIError");
    assert.equal(thrown.status, null);
    assert.equal(thrown.error.message_type, "error_message");
    assert.equal(thrown.error.error_type, "llm_error");
    assert.match(String(thrown.error.detail), new RegExp(`Error code: ${code}`));
  }
});

test("no recording carries credentials", () => {
  for (const kind of ["opencode", "letta"]) {
    for (const name of names(kind)) {
      const text = readFileSync(join(dir, kind, `${name}.jsonl`), "utf8");
      assert.doesNotMatch(text, /authorization|bearer |password|shared_?secret|access_token/i, `${kind}/${name}`);
    }
  }
});
