import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { RequestPermissionRequest, SessionUpdate } from "@agentclientprotocol/sdk";
import { prefixClashes } from "../../src/config/acp.ts";
import { acpSubject } from "../../src/acp/permissions.ts";
import { AcpTranslator } from "../../src/acp/events.ts";
import { renderTurn } from "../../src/turns/render.ts";
import { TurnState } from "../../src/turns/state.ts";
import { loadConfig } from "../../src/config/load.ts";
import { askText } from "../../src/opencode/permission-text.ts";

// Recorded JSON-RPC lines of real `opencode acp` sessions (opencode-ai 1.18.33, scripted model).
interface Line {
  dir: "in" | "out";
  msg: { id?: number; method?: string; params?: Record<string, unknown>; result?: Record<string, unknown> };
}
const fixture = (name: string): Line[] =>
  readFileSync(join(import.meta.dirname, "../fixtures/acp", name), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Line);

interface Replayed {
  translator: AcpTranslator;
  permission: RequestPermissionRequest | undefined;
  snapshots: string[];
  render(final: boolean, durationMs: number): string;
}

const working = "⏳ _opencode is working…_";

/** Replays a session through the translator into the turn engine's state, as the backend does, up to the prompt's result. */
function replay(name: string): Replayed {
  const translator = new AcpTranslator();
  const state = new TurnState();
  let permission: RequestPermissionRequest | undefined;
  const snapshots: string[] = [];
  for (const { dir, msg } of fixture(name)) {
    if (dir !== "in") continue;
    if (msg.method === "session/update") {
      let changed = false;
      for (const e of translator.events((msg.params as { update: SessionUpdate }).update)) changed = state.apply(e) || changed;
      if (changed) snapshots.push(renderTurn(state, { final: false, durationMs: 0, working }));
    }
    if (msg.method === "session/request_permission") permission = msg.params as unknown as RequestPermissionRequest;
    const result = msg.result as { stopReason?: string; usage?: { totalTokens?: number } } | undefined;
    if (result?.stopReason) for (const e of translator.end("opencode", result.stopReason, result.usage)) state.apply(e);
  }
  return { translator, permission, snapshots, render: (final, durationMs) => renderTurn(state, { final, durationMs, working }) };
}

test("a streamed answer grows in place and ends with the agent, tokens and time", () => {
  const { render, snapshots } = replay("opencode-echo.jsonl");
  assert.deepEqual(snapshots, ["Echo", "Echo: he", "Echo: hello", "Echo: hello ther", "Echo: hello there"]);
  assert.equal(render(true, 1234), "Echo: hello there\n\n— opencode · 2,445 tokens · 1.2s");
});

test("a tool call is one line that follows its states; the permission shows the whole command", () => {
  const { render, translator, permission, snapshots } = replay("opencode-bash.jsonl");
  assert.equal(snapshots[0], "▶️ bash ⏳");
  assert.ok(snapshots.includes("▶️ bash `echo hi` …"));
  assert.equal(render(true, 2000), "▶️ bash `echo hi` ✓\n\nCommand finished: hi\n\n— opencode · 2,503 tokens · 2.0s");
  assert.ok(permission);
  const subject = acpSubject(permission, translator.toolName(permission.toolCall.toolCallId));
  assert.deepEqual(subject, { permission: "bash", command: "echo hi" });
  const text = askText(subject, "acp-opencode-1", { markdown: "Alice", name: "Alice" }, "!acp", "opencode");
  assert.match(text.plain, /^🔐 Permission needed — Alice: opencode wants to use bash:\n\n```\necho hi\n```/);
  assert.match(text.plain, /`!acp allow`/);
  assert.deepEqual(permission.options.map((o) => o.kind), ["allow_once", "allow_always", "reject_once"]);
});

test("a rejected tool call says why it failed", () => {
  const { render } = replay("opencode-bash-rejected.jsonl");
  assert.match(render(true, 0), /^▶️ bash `rm -rf \/tmp\/nothing-here` ✗ The user rejected permission/);
});

test("a cancelled turn says it was stopped", () => {
  const { render } = replay("opencode-cancel.jsonl");
  assert.equal(render(true, 500), "⏹️ Stopped.\n\n— opencode · 0 tokens · 0.5s");
});

test("a plan shows as a checklist", () => {
  const state = new TurnState();
  for (const e of new AcpTranslator().events({ sessionUpdate: "plan", entries: [
    { content: "Read the code", priority: "high", status: "completed" },
    { content: "Fix the bug", priority: "high", status: "in_progress" },
    { content: "Run the tests", priority: "medium", status: "pending" },
  ] })) state.apply(e);
  assert.equal(renderTurn(state, { final: false, durationMs: 0, working }), "📝 plan\n  ☑ Read the code\n  ▸ Fix the bug\n  ☐ Run the tests");
});

test("acp.agents: prefixes must not clash, and the bot's own variables are refused", () => {
  const agent = { command: "x", args: [], env: [], prefix: "!oc" };
  assert.deepEqual(prefixClashes({ a: agent }, [{ prefix: "!OC", key: "commands.prefix" }]).map((i) => i.message), ["!oc is already the prefix of commands.prefix"]);
  assert.deepEqual(prefixClashes({ a: { ...agent, prefix: "!g" }, b: { ...agent, prefix: "!g" } }, []).map((i) => i.path.join(".")), ["acp.agents.b.prefix"]);
  assert.deepEqual(prefixClashes({ opencode: { ...agent, prefix: "!x" } }, []).map((i) => i.path.join(".")), ["acp.agents.opencode"]);
});

test("acp config parses from a file with defaults, and refuses clashes naming the key", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "acp-config-"));
  const base = "matrix: { homeserverUrl: 'http://h', accessToken: 't' }\naccess: { allowedUsers: ['@a:x'] }\n";
  const file = (name: string, text: string): string => {
    writeFileSync(join(dir, name), base + text);
    return join(dir, name);
  };
  const c = loadConfig({ file: file("ok.yaml", "acp:\n  agents:\n    gemini: { command: gemini, args: [--experimental-acp], prefix: '!gemini', env: [GEMINI_API_KEY] }\n"), env: {} });
  assert.deepEqual(c.acp?.agents.gemini, { command: "gemini", args: ["--experimental-acp"], env: ["GEMINI_API_KEY"], prefix: "!gemini" });
  assert.equal(loadConfig({ file: file("none.yaml", ""), env: {} }).acp, undefined);
  assert.throws(() => loadConfig({ file: file("clash.yaml", "acp:\n  agents:\n    x: { command: x, prefix: '!letta' }\n"), env: {} }), /acp\.agents\.x\.prefix.*letta\.prefix/);
  assert.throws(() => loadConfig({ file: file("secret.yaml", "acp:\n  agents:\n    x: { command: x, prefix: '!x', env: [MATRIX_ACCESS_TOKEN] }\n"), env: {} }), /MATRIX_ACCESS_TOKEN is the bot's own/);
});
