import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { APIConnectionError, APIError } from "@letta-ai/letta-client";
import { describeLettaError, isRetryable, LettaApi, withRetry, type RetryNotice } from "../../src/letta/api.ts";
import { createLogger } from "../../src/log.ts";

// The bot retries a Letta request only while Letta cannot have processed it: a refused
// connection, a timeout before the answer began, or a 5xx. Once a stream began, never.

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, hit: number, body: string) => void;

async function fakeLetta(handler: Handler): Promise<{ url: string; hits: Array<{ method: string; path: string; headers: http.IncomingHttpHeaders }>; checks: string[]; close(): Promise<void> }> {
  const hits: Array<{ method: string; path: string; headers: http.IncomingHttpHeaders }> = [];
  // Before re-sending, the bot asks whether Letta already has the message (its history, its
  // runs); this fake Letta never has it. Those questions are counted apart from the sends.
  const checks: string[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      if (req.method === "GET" && /^\/v1\/(agents\/[^/]+\/messages|runs)\b/.test(req.url ?? "")) {
        checks.push(req.url ?? "");
        json(res, 200, []);
        return;
      }
      hits.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers });
      handler(req, res, hits.length, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    checks,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const sse = (res: http.ServerResponse, events: unknown[], end = true): void => {
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`);
  if (end) res.end("data: [DONE]\n\n");
};
const json = (res: http.ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

const log = createLogger("silent");
const api = (url: string, extra: Partial<ConstructorParameters<typeof LettaApi>[0]> = {}): LettaApi =>
  new LettaApi({ baseUrl: url, maxRetries: 3, retryDelayMs: 10, timeoutMs: 2000, log, ...extra });
const signal = (): AbortSignal => new AbortController().signal;

async function drain(stream: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const e of stream) out.push(e);
  return out;
}

test("which failures are retried", () => {
  assert.equal(isRetryable(new APIConnectionError({ message: "refused" })), true);
  assert.equal(isRetryable(APIError.generate(503, { detail: "down" }, undefined, new Headers())), true);
  assert.equal(isRetryable(APIError.generate(500, { detail: "boom" }, undefined, new Headers())), true);
  assert.equal(isRetryable(APIError.generate(404, { detail: "no agent" }, undefined, new Headers())), false);
  assert.equal(isRetryable(APIError.generate(422, { detail: "bad" }, undefined, new Headers())), false);
  // An error event inside a stream that already began has no status: never retried.
  assert.equal(isRetryable(new APIError(undefined, { message: "llm error" }, undefined, undefined)), false);
  assert.equal(isRetryable(new Error("other")), false);
});

test("withRetry backs off exponentially and gives up after maxRetries", async () => {
  const notices: RetryNotice[] = [];
  let calls = 0;
  await assert.rejects(
    withRetry(
      async () => {
        calls++;
        throw new APIConnectionError({ message: "refused" });
      },
      { maxRetries: 3, retryDelayMs: 5 },
      { onRetry: (n) => void notices.push(n) },
    ),
    (err: Error & { retries?: number }) => err.retries === 3,
  );
  assert.equal(calls, 4);
  assert.deepEqual(notices.map((n) => [n.attempt, n.of, n.delayMs]), [[1, 3, 5], [2, 3, 10], [3, 3, 20]]);
  calls = 0;
  await assert.rejects(withRetry(async () => { calls++; throw new Error("not retryable"); }, { maxRetries: 3, retryDelayMs: 5 }));
  assert.equal(calls, 1);
});

test("503s before the answer are retried, then the stream is read; the SDK header that Letta wants is sent", async () => {
  const server = await fakeLetta((_req, res, hit) => {
    if (hit <= 2) json(res, 503, { detail: "busy" });
    else sse(res, [{ message_type: "ping", id: "p" }, { message_type: "assistant_message", id: "m", content: "hi" }, { message_type: "stop_reason", stop_reason: "end_turn" }]);
  });
  try {
    const retries: number[] = [];
    const stream = await api(server.url, { apiToken: "tok-123456" }).sendStreaming("agent-1", "[Alice] hi", "otid-1", { signal: signal(), onRetry: (n) => void retries.push(n.attempt) });
    const events = await drain(stream);
    assert.equal(events.length, 3);
    assert.deepEqual(retries, [1, 2]);
    assert.equal(server.hits.length, 3);
    assert.equal(server.checks.length, 4, "before each re-send it asked whether Letta had the message (history, then runs)");
    const hit = server.hits[2];
    assert.equal(hit?.method, "POST");
    assert.equal(hit?.path, "/v1/agents/agent-1/messages");
    assert.ok(hit?.headers["x-stainless-package-version"], "Letta refuses streaming without the SDK version header");
    assert.equal(hit?.headers.authorization, "Bearer tok-123456");
  } finally {
    await server.close();
  }
});

test("a 4xx is not retried and reads as one line with Letta's own words", async () => {
  const server = await fakeLetta((_req, res) => json(res, 404, { detail: "Agent with ID agent-x not found" }));
  try {
    const err = await api(server.url).sendStreaming("agent-x", "hi", "o", { signal: signal() }).then(() => undefined, (e: unknown) => e);
    assert.equal(server.hits.length, 1);
    assert.equal(describeLettaError(err, server.url), "Letta refused the request (HTTP 404): Agent with ID agent-x not found.");
  } finally {
    await server.close();
  }
});

test("a refused connection is retried maxRetries times, then told in one line", async () => {
  const server = await fakeLetta(() => {});
  const url = server.url;
  await server.close();
  const retries: number[] = [];
  const err = await api(url).sendStreaming("agent-1", "hi", "o", { signal: signal(), onRetry: (n) => void retries.push(n.delayMs) }).then(() => undefined, (e: unknown) => e);
  assert.deepEqual(retries, [10, 20, 40]);
  assert.equal(describeLettaError(err, url), `Letta is not reachable at ${url}: connection refused (after 3 retries).`);
});

test("a timeout before the answer began is retried", async () => {
  const server = await fakeLetta((_req, res, hit) => {
    if (hit === 1) return; // never answers
    sse(res, [{ message_type: "stop_reason", stop_reason: "end_turn" }]);
  });
  try {
    const stream = await api(server.url, { timeoutMs: 300 }).sendStreaming("agent-1", "hi", "o", { signal: signal() });
    await drain(stream);
    assert.equal(server.hits.length, 2);
  } finally {
    await server.close();
  }
});

test("a stream that breaks off after it began is never sent again", async () => {
  const server = await fakeLetta((_req, res) => {
    sse(res, [{ message_type: "assistant_message", id: "m", content: "par" }], false);
    setTimeout(() => res.socket?.destroy(), 50);
  });
  try {
    const stream = await api(server.url).sendStreaming("agent-1", "hi", "o", { signal: signal() });
    const seen: unknown[] = [];
    await assert.rejects(async () => {
      for await (const e of stream) seen.push(e);
    });
    assert.equal(seen.length, 1);
    assert.equal(server.hits.length, 1, "not re-sent");
  } finally {
    await server.close();
  }
});

test("an error event inside the stream surfaces as a status-less APIError (not retried)", async () => {
  const server = await fakeLetta((_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(`data: ${JSON.stringify({ message_type: "stop_reason", stop_reason: "llm_api_error" })}\n\n`);
    res.write(`event: error\ndata: ${JSON.stringify({ message_type: "error_message", message: "An error occurred with the LLM request.", detail: "boom" })}\n\n`);
    res.end("data: [DONE]\n\n");
  });
  try {
    const stream = await api(server.url).sendStreaming("agent-1", "hi", "o", { signal: signal() });
    const err = await drain(stream).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof APIError && err.status === undefined);
    assert.equal(isRetryable(err), false);
    assert.equal(describeLettaError(err, server.url), "An error occurred with the LLM request. — boom");
    assert.equal(server.hits.length, 1);
  } finally {
    await server.close();
  }
});

test("creating an agent after a 5xx first checks whether the failed attempt made it", async () => {
  let creates = 0;
  const made: Array<{ id: string; name: string; model: string }> = [];
  const server = await fakeLetta((req, res, _hit, body) => {
    if (req.method === "POST" && req.url === "/v1/agents/") {
      creates++;
      const { name, model } = JSON.parse(body) as { name: string; model: string };
      made.push({ id: "agent-11111111-2222", name, model });
      json(res, 500, { detail: "created, then the response failed" });
      return;
    }
    if (req.method === "GET" && req.url?.startsWith("/v1/agents/")) {
      json(res, 200, made);
      return;
    }
    json(res, 404, { detail: "no route" });
  });
  try {
    const agent = await api(server.url).createAgent("pal", "openai/x", undefined);
    assert.deepEqual(agent, { id: "agent-11111111-2222", name: "pal", model: "openai/x" });
    assert.equal(creates, 1);
  } finally {
    await server.close();
  }
});

test("a 5xx that outlasts the retries is told in one line with the count", async () => {
  const server = await fakeLetta((_req, res) => json(res, 503, { detail: "Service unavailable." }));
  try {
    const err = await api(server.url, { maxRetries: 1 }).sendStreaming("agent-1", "hi", "o", { signal: signal() }).then(() => undefined, (e: unknown) => e);
    assert.equal(server.hits.length, 2);
    assert.equal(describeLettaError(err, server.url), "Letta failed (HTTP 503): Service unavailable (after 1 retry).");
  } finally {
    await server.close();
  }
});
