// A scripted OpenAI-compatible model server for tests (OpenCode and Letta talk to it).
// Replies are chosen by the last user message; see `chooseScript` and `expectedReply`.
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

export interface RecordedRequest {
  at: number;
  kind: "chat" | "title" | "embeddings";
  lastUserText: string;
  hasToolResult: boolean;
  model: string;
}

export interface ScriptedModel {
  baseUrl: string; // http://127.0.0.1:P/v1
  port: number;
  requests(): RecordedRequest[];
  close(): Promise<void>;
}

export interface ScriptedModelOptions {
  port?: number;
  tokenDelayMs?: number; // default 20
  onRequestBody?: (urlPath: string, body: unknown) => void; // debugging hook
}

interface ChatMessage {
  role: string;
  content?: unknown;
  tool_calls?: { id: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

interface ToolCall { name: string; args: Record<string, unknown> }
interface Reply { reasoning?: string; chunks: string[]; delayMs: number; toolCall?: ToolCall }

export type Script =
  | { kind: "hello" } | { kind: "bash"; command: string } | { kind: "slow" }
  | { kind: "long"; words: number } | { kind: "fail"; status: number } | { kind: "echo"; text: string }
  | { kind: "remember"; fact: string } | { kind: "question"; text: string } | { kind: "questions"; texts: string[] }
  | { kind: "flaky"; status: number; times: number; then: number }
  | { kind: "delegate"; title: string; prompt: string } | { kind: "fix-login" } | { kind: "opencode-result"; text: string }
  | { kind: "deploy"; target: string };

const ATTRIBUTION = /^\s*\[[^\]\n]*\]:?\s*/;
export function stripAttribution(text: string): string {
  return text.replace(ATTRIBUTION, "").trim();
}

/** Picks the script for a user text (attribution like "[Alice] " is ignored). */
export function chooseScript(userText: string): Script {
  const text = stripAttribution(userText);
  const lower = text.toLowerCase();
  // A delegated result reaching a Letta agent as a message (see "get it fixed" below); first: it quotes anything.
  if (lower.startsWith("opencode result:")) return { kind: "opencode-result", text };
  if (lower.includes("hello.py")) return { kind: "hello" };
  const bashPrefix = /^bash:\s*/i.exec(text);
  if (bashPrefix) return { kind: "bash", command: text.slice(bashPrefix[0].length).trim() || "echo hi" };
  if (lower.includes("run bash")) return { kind: "bash", command: "echo hi" };
  // "remember: <fact>" calls Letta's memory_insert tool (a Letta agent has no write/bash).
  const remember = /^remember:\s*/i.exec(text);
  if (remember) return { kind: "remember", fact: text.slice(remember[0].length).trim() || "something" };
  // "deploy: <target>" calls deploy_preview {target}: a Letta tool that test/e2e/letta-approvals.test.ts
  // registers with requires_approval, so the agent stops and asks before it runs.
  const deploy = /^deploy:\s*/i.exec(text);
  if (deploy) return { kind: "deploy", target: text.slice(deploy[0].length).trim() || "staging" };
  // "question: <text>" calls OpenCode's question tool (one question, options Yes and No).
  const question = /^question:\s*/i.exec(text);
  if (question) return { kind: "question", text: text.slice(question[0].length).trim() || "Proceed?" };
  // "questions: A? | B?" asks several in one call of the question tool (each with options Yes and No).
  const questions = /^questions:\s*/i.exec(text);
  if (questions) return { kind: "questions", texts: text.slice(questions[0].length).split("|").map((q) => q.trim()).filter(Boolean) };
  if (lower.includes("slow")) return { kind: "slow" };
  const long = /long\s+(\d+)/.exec(lower);
  if (long) return { kind: "long", words: Math.min(Number(long[1]), 100_000) };
  // "fail 500 x2 then 400": the first 2 answers to this exact text are HTTP 500, all later ones HTTP 400.
  const flaky = /fail\s+([45]\d\d)\s+x(\d+)\s+then\s+([45]\d\d)\b/.exec(lower);
  if (flaky) return { kind: "flaky", status: Number(flaky[1]), times: Number(flaky[2]), then: Number(flaky[3]) };
  // "fail" answers HTTP 500 (OpenCode retries that with backoff forever); "fail 400" picks the status.
  if (lower.includes("fail")) return { kind: "fail", status: Number(/fail\s+([45]\d\d)\b/.exec(lower)?.[1] ?? 500) };
  // Letta delegating to OpenCode (test/e2e/letta-delegation.test.ts): "… get it fixed" makes a Letta
  // agent call opencode_run_task; OpenCode's "Refuse empty passwords …" writes login.py, then runs a
  // command (bash: asks permission), then says it is done.
  if (lower.includes("get it fixed")) return { kind: "delegate", title: "Fix empty-password login", prompt: "Refuse empty passwords in login.py, then run the login tests." };
  if (lower.startsWith("refuse empty passwords")) return { kind: "fix-login" };
  return { kind: "echo", text };
}

const SLOW_WORDS = 40;
function words(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
}

/** The exact final assistant text for a user text (echo, slow, long; hello.py gives the post-tool summary). */
export function expectedReply(userText: string): string {
  const s = chooseScript(userText);
  switch (s.kind) {
    case "echo": return `Echo: ${s.text}`;
    case "slow": return words("slow", SLOW_WORDS).join(" ");
    case "long": return words("word", s.words).join(" ");
    case "hello": return "Created hello.py.";
    default: throw new Error(`expectedReply: script "${s.kind}" has no fixed reply`);
  }
}

/** Splits text into about n chunks that concatenate back to it. */
function splitChunks(text: string, n: number): string[] {
  const size = Math.max(1, Math.ceil(text.length / n));
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length ? out : [""];
}

/** Word chunks (" " joins them); at most ~200 chunks so huge N still streams in seconds. */
function wordChunks(list: string[]): string[] {
  const per = Math.max(1, Math.ceil(list.length / 200));
  const out: string[] = [];
  for (let i = 0; i < list.length; i += per) out.push((i ? " " : "") + list.slice(i, i + per).join(" "));
  return out;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((p: unknown) => (p && typeof p === "object" && "text" in p && typeof p.text === "string" ? p.text : ""))
    .filter(Boolean)
    .join("\n");
}

function userTextOf(m: ChatMessage | undefined): string {
  return textOf(m?.content).replace(/<system-reminder>[\s\S]*?<\/system-reminder>/g, "").trim();
}

function workingDirectory(messages: ChatMessage[]): string {
  for (const m of messages) {
    if (m.role !== "system") continue;
    const hit = /Working directory:\s*(.+)/.exec(textOf(m.content));
    if (hit?.[1]) return hit[1].trim();
  }
  return process.cwd();
}

interface DelegatedResult { outcome: string; title: string; sessionId: string; finalText: string; changedFiles: string[]; note?: string }

/** The bot's JSON result of an OpenCode task in a tool return (Letta may wrap it as {"message": …}) or in a message. */
function findDelegatedResult(text: string, depth = 0): DelegatedResult | undefined {
  if (depth > 3) return undefined;
  let value: unknown;
  try { value = JSON.parse(text); } catch {
    const at = text.indexOf('{"sessionId"');
    return at >= 0 ? findDelegatedResult(text.slice(at), depth + 1) : undefined;
  }
  if (typeof value === "string") return findDelegatedResult(value, depth + 1);
  if (!value || typeof value !== "object") return undefined;
  const o = value as Record<string, unknown>;
  if (typeof o.outcome === "string") return o as unknown as DelegatedResult;
  return typeof o.message === "string" ? findDelegatedResult(o.message, depth + 1) : undefined;
}

/** What a Letta agent tells the room about OpenCode's answer (an opencode_* tool result, or an "OpenCode result:" message). */
export function delegationSummary(output: string): string {
  const r = findDelegatedResult(output);
  if (!r) {
    let why = output;
    try { const o = JSON.parse(output) as { message?: unknown }; if (typeof o.message === "string") why = o.message; } catch { /* as is */ }
    return `OpenCode could not take the task: ${why.split("\n").find((l) => l.trim())?.trim() ?? ""}`;
  }
  const files = r.changedFiles.length ? ` Changed: ${r.changedFiles.join(", ")}.` : "";
  if (r.outcome === "done") return `Done. OpenCode says: ${r.finalText}${files}`;
  if (r.outcome === "running") return `OpenCode is still working on “${r.title}” (session ${r.sessionId}); I will report back.`;
  if (r.outcome === "aborted") return `OpenCode's work on “${r.title}” was stopped.`;
  return `OpenCode could not finish “${r.title}”: ${r.note ?? r.finalText}`;
}

/** OpenCode's "Refuse empty passwords …": write login.py, then run the tests (bash asks), then say so. */
function fixLoginStep(messages: ChatMessage[]): Reply {
  const result = messages[messages.length - 1]!;
  const call = messages.flatMap((m) => m.tool_calls ?? []).find((c) => c.id === result.tool_call_id);
  if (call?.function.name === "write") return { chunks: ["Now the tests."], delayMs: 20, toolCall: { name: "bash", args: { command: "echo login tests passed", description: "Run the login tests" } } };
  if (/rejected permission|denied|permission.*reject/i.test(textOf(result.content))) return { chunks: splitChunks(afterTool(messages), 3), delayMs: 20 };
  return { chunks: splitChunks("Fixed: login.py refuses empty passwords, and the login tests pass.", 3), delayMs: 20 };
}

function afterTool(messages: ChatMessage[]): string {
  const result = messages[messages.length - 1]!;
  const output = textOf(result.content);
  const call = messages.flatMap((m) => m.tool_calls ?? []).find((c) => c.id === result.tool_call_id);
  let args: Record<string, unknown> = {};
  try { args = JSON.parse(call?.function.arguments ?? "{}") as Record<string, unknown>; } catch { /* keep {} */ }
  const firstLine = output.split("\n").find((l) => l.trim())?.trim() ?? "";
  if (call?.function.name.startsWith("opencode_")) return delegationSummary(output);
  if (/rejected permission|denied|permission.*reject/i.test(output)) return `The ${call?.function.name ?? "tool"} call was denied.`;
  if (call?.function.name === "write") {
    if (/^error|failed/i.test(output)) return `Could not write ${path.basename(String(args.filePath ?? "file"))}: ${firstLine}`;
    return `Created ${path.basename(String(args.filePath ?? "file"))}.`;
  }
  if (call?.function.name === "memory_insert") return `Noted: ${String(args.new_string ?? "")}`;
  if (call?.function.name === "deploy_preview") {
    let said = firstLine;
    try { const o = JSON.parse(output) as { message?: unknown }; if (typeof o.message === "string") said = o.message; } catch { /* as is */ }
    return `Preview deployed: ${said}`;
  }
  if (call?.function.name === "bash") {
    if (/^error|exit code [1-9]|failed/i.test(output)) return `Command failed: ${firstLine}`;
    return `Command finished: ${firstLine}`;
  }
  return `Tool ${call?.function.name ?? "?"} finished: ${firstLine}`;
}

function titleFor(userText: string): string {
  const w = stripAttribution(userText).replace(/[^\p{L}\p{N}\s.]/gu, " ").split(/\s+/).filter(Boolean).slice(0, 6);
  return w.length ? w.join(" ") : "New chat";
}

// Deterministic pseudo-random unit vector for a text.
function embed(text: string, dim: number): number[] {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  const v: number[] = [];
  let norm = 0;
  for (let i = 0; i < dim; i++) {
    h = Math.imul(h ^ (h >>> 15), 2246822507) + i;
    h = Math.imul(h ^ (h >>> 13), 3266489909);
    const x = ((h >>> 0) / 4294967296) * 2 - 1;
    v.push(x);
    norm += x * x;
  }
  const n = Math.sqrt(norm) || 1;
  return v.map((x) => x / n);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function startScriptedModel(opts: ScriptedModelOptions = {}): Promise<ScriptedModel> {
  const tokenDelayMs = opts.tokenDelayMs ?? 20;
  const recorded: RecordedRequest[] = [];
  let callSeq = 0;
  let idSeq = 0;
  const flakyCounts = new Map<string, number>();

  function plan(messages: ChatMessage[]): Reply | number {
    const last = messages[messages.length - 1];
    const lastUser = [...messages].reverse().find((m) => m.role === "user");
    const userText = userTextOf(lastUser);
    if (last?.role === "tool" && chooseScript(userText).kind === "fix-login") return fixLoginStep(messages);
    if (last?.role === "tool") return { chunks: splitChunks(afterTool(messages), 3), delayMs: tokenDelayMs };
    const s = chooseScript(userText);
    const reasoning = /reason/i.test(userText) ? `Thinking about: ${stripAttribution(userText)}` : undefined;
    switch (s.kind) {
      case "hello":
        return { chunks: [], delayMs: tokenDelayMs, toolCall: { name: "write",
          args: { filePath: path.join(workingDirectory(messages), "hello.py"), content: 'print("hello")\n' } } };
      case "bash":
        return { chunks: [], delayMs: tokenDelayMs, toolCall: { name: "bash", args: { command: s.command, description: "Run command" } } };
      case "remember":
        return { chunks: [], delayMs: tokenDelayMs, toolCall: { name: "memory_insert", args: { label: "human", new_string: s.fact } } };
      case "question":
        return { chunks: [], delayMs: tokenDelayMs, toolCall: { name: "question", args: { questions: [{ question: s.text, header: "Confirm",
          options: [{ label: "Yes", description: "Go ahead" }, { label: "No", description: "Stop here" }] }] } } };
      case "questions":
        return { chunks: [], delayMs: tokenDelayMs, toolCall: { name: "question", args: { questions: s.texts.map((q, i) => ({ question: q, header: `Question ${i + 1}`,
          options: [{ label: "Yes", description: "Go ahead" }, { label: "No", description: "Stop here" }] })) } } };
      case "slow": return { reasoning, chunks: wordChunks(words("slow", SLOW_WORDS)), delayMs: 100 };
      case "long": return { reasoning, chunks: wordChunks(words("word", s.words)), delayMs: tokenDelayMs };
      case "fail": return s.status;
      case "flaky": {
        const n = (flakyCounts.get(userText) ?? 0) + 1;
        flakyCounts.set(userText, n);
        return n <= s.times ? s.status : s.then;
      }
      case "delegate":
        return { chunks: [], delayMs: tokenDelayMs, toolCall: { name: "opencode_run_task", args: { title: s.title, prompt: s.prompt } } };
      case "fix-login":
        return { chunks: ["Fixing login.py."], delayMs: tokenDelayMs, toolCall: { name: "write", args: { filePath: path.join(workingDirectory(messages), "login.py"),
          content: 'def login(user, password):\n    if not password:\n        raise ValueError("empty password")\n    return True\n' } } };
      case "opencode-result": return { chunks: splitChunks(delegationSummary(s.text), 3), delayMs: tokenDelayMs };
      case "deploy": return { chunks: [], delayMs: tokenDelayMs, toolCall: { name: "deploy_preview", args: { target: s.target } } };
      case "echo": return { reasoning, chunks: splitChunks(expectedReply(userText), 5), delayMs: tokenDelayMs };
    }
  }

  async function chat(body: Record<string, unknown>, req: http.IncomingMessage, res: http.ServerResponse) {
    const messages = (Array.isArray(body.messages) ? body.messages : []) as ChatMessage[];
    const model = String(body.model ?? "");
    const lastUser = [...messages].reverse().find((m) => m.role === "user");
    const isTitle = textOf(messages.find((m) => m.role === "system")?.content).startsWith("You are a title generator");
    const hasToolResult = messages[messages.length - 1]?.role === "tool";
    recorded.push({ at: Date.now(), kind: isTitle ? "title" : "chat", lastUserText: userTextOf(lastUser), hasToolResult, model });
    const reply = isTitle ? { chunks: [titleFor(userTextOf(lastUser))], delayMs: 0 } : plan(messages);
    if (typeof reply === "number") {
      res.writeHead(reply, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "Scripted failure", type: reply >= 500 ? "server_error" : "invalid_request_error", param: null, code: "scripted_failure" } }));
      return;
    }
    const id = `chatcmpl-${++idSeq}`;
    const created = Math.floor(Date.now() / 1000);
    const text = reply.chunks.join("");
    const toolId = reply.toolCall ? `call_${++callSeq}` : undefined;
    const toolArgs = reply.toolCall ? JSON.stringify(reply.toolCall.args) : "";
    const usage = {
      prompt_tokens: Math.ceil(JSON.stringify(messages).length / 4),
      completion_tokens: reply.chunks.length + (reply.toolCall ? 10 : 0),
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    const finish = reply.toolCall ? "tool_calls" : "stop";
    if (body.stream !== true) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id, object: "chat.completion", created, model, usage, choices: [{ index: 0, finish_reason: finish,
        message: { role: "assistant", content: reply.toolCall ? null : text,
          ...(reply.reasoning ? { reasoning_content: reply.reasoning } : {}),
          ...(reply.toolCall ? { tool_calls: [{ id: toolId, type: "function", function: { name: reply.toolCall.name, arguments: toolArgs } }] } : {}) } }] }));
      return;
    }
    let closed = false;
    res.on("close", () => { closed = true; });
    req.on("aborted", () => { closed = true; });
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const send = (delta: Record<string, unknown>, finishReason: string | null = null) =>
      res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model,
        choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`);
    send({ role: "assistant", content: "" });
    const stream = async (field: string, parts: string[]) => {
      for (const part of parts) {
        if (closed) return;
        if (reply.delayMs) await sleep(reply.delayMs);
        if (!closed) send({ [field]: part });
      }
    };
    if (reply.reasoning) await stream("reasoning_content", splitChunks(reply.reasoning, 3));
    await stream("content", reply.chunks);
    if (reply.toolCall && !closed) {
      send({ tool_calls: [{ index: 0, id: toolId, type: "function", function: { name: reply.toolCall.name, arguments: "" } }] });
      for (const piece of splitChunks(toolArgs, 3)) {
        if (reply.delayMs) await sleep(reply.delayMs);
        if (!closed) send({ tool_calls: [{ index: 0, function: { arguments: piece } }] });
      }
    }
    if (closed) return;
    send({}, finish);
    res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`);
    res.end("data: [DONE]\n\n");
  }

  function embeddings(body: Record<string, unknown>, res: http.ServerResponse) {
    const raw = body.input;
    const inputs: unknown[] = Array.isArray(raw) && raw.length && typeof raw[0] !== "number" ? raw : [raw];
    const dim = typeof body.dimensions === "number" && body.dimensions > 0 ? body.dimensions : 1536;
    const texts = inputs.map((i) => (typeof i === "string" ? i : JSON.stringify(i)));
    recorded.push({ at: Date.now(), kind: "embeddings", lastUserText: texts[0] ?? "", hasToolResult: false, model: String(body.model ?? "") });
    const base64 = body.encoding_format === "base64"; // the openai Python client asks for base64 by default
    const data = texts.map((t, index) => {
      const v = embed(t, dim);
      const embedding = base64 ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v;
      return { object: "embedding", index, embedding };
    });
    const tokens = texts.reduce((n, t) => n + Math.ceil(t.length / 4), 0);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ object: "list", data, model: String(body.model ?? ""), usage: { prompt_tokens: tokens, total_tokens: tokens } }));
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = (req.url ?? "/").split("?")[0]!;
      let body: Record<string, unknown> = {};
      try { if (chunks.length) body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>; } catch { /* empty body */ }
      opts.onRequestBody?.(url, body);
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      if (req.method === "POST" && /\/chat\/completions$/.test(url)) {
        chat(body, req, res).catch((e: unknown) => { if (!res.headersSent) json(500, { error: { message: String(e) } }); else res.end(); });
      } else if (req.method === "POST" && /\/embeddings$/.test(url)) embeddings(body, res);
      else if (req.method === "GET" && /\/models$/.test(url)) {
        json(200, { object: "list", data: [{ id: "fake-model", object: "model", created: 0, owned_by: "scripted" }] });
      } else if (req.method === "GET" && url === "/_script/requests") json(200, recorded);
      else if (req.method === "POST" && url === "/_script/reset") { recorded.length = 0; json(200, { ok: true }); }
      else json(404, { error: { message: `no route ${req.method} ${url}`, type: "not_found" } });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    port,
    requests: () => recorded.slice(),
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
