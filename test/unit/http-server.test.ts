import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { PassThrough } from "node:stream";
import { BotMetrics } from "../../src/http/metrics.ts";
import { startHttpServer, tokenMatches, type HealthReport } from "../../src/http/server.ts";
import { createLogger } from "../../src/log.ts";
import { Notifier } from "../../src/notify/notifier.ts";
import { openDatabase } from "../../src/store/db.ts";
import { ThreadStore } from "../../src/store/threads.ts";
import { TurnStore } from "../../src/store/turns.ts";
import { parseExposition, sampleValue } from "./http-exposition.ts";

// The bot's HTTP endpoints on a real listening socket, with the real notifier over an in-memory
// database and a recording stand-in for Matrix: every bad request gets a 4xx with a reason.

const TOKEN = "unit-test-notify-token-0123456789";
const ROOM = "!default:example.org";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
}

function call(port: number, method: string, path: string, opts: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

describe("HTTP endpoints", () => {
  const logText: string[] = [];
  const logStream = new PassThrough();
  logStream.on("data", (c: Buffer) => logText.push(c.toString("utf8")));
  const log = createLogger("debug", [TOKEN], logStream);
  const db = openDatabase(":memory:");
  const threads = new ThreadStore(db);
  const turns = new TurnStore(db);
  const sent: Array<{ roomId: string; content: Record<string, unknown> }> = [];
  const streaming = new Set<string>();
  let failSend = false;
  const sender = {
    send: async (roomId: string, content: Record<string, unknown>): Promise<string> => {
      if (failSend) throw new Error("M_FORBIDDEN: not in room");
      sent.push({ roomId, content });
      return `$event${sent.length}`;
    },
  };
  let defaultRoom: string | undefined = ROOM;
  const notifierFor = (): Notifier => new Notifier({ threads, turns, sender, log, isStreaming: (s) => streaming.has(s), defaultRoom });
  let healthReport: HealthReport = { ok: true, matrix: { ok: true }, opencode: [{ ok: true }], database: { ok: true } };
  const metrics = new BotMetrics({ defaultMetrics: false });
  let port = 0;
  let close: () => Promise<void> = async () => {};
  let disabledPort = 0;
  let closeDisabled: () => Promise<void> = async () => {};

  before(async () => {
    const s = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      log,
      health: async () => healthReport,
      metrics,
      // The rate limits have tests of their own (http-ratelimit.test.ts); here they must not get in the way.
      notify: { token: TOKEN, deliver: (p) => notifierFor().deliver(p), onOutcome: (o) => metrics.notified(o), perTokenPerMinute: 10_000, perSessionPerMinute: 10_000 },
    });
    port = s.port;
    close = s.close;
    const d = await startHttpServer({ host: "127.0.0.1", port: 0, log, health: async () => healthReport, notify: { token: undefined, deliver: () => Promise.reject(new Error("unused")) } });
    disabledPort = d.port;
    closeDisabled = d.close;
  });
  after(async () => {
    await close();
    await closeDisabled();
    db.close();
  });

  test("every bad /notify request gets a 4xx and a JSON error that says what is wrong", async () => {
    const good = JSON.stringify({ title: "Done", message: "all good", status: "completed", sessionId: "ses_x" });
    const cases: Array<{ what: string; method?: string; path?: string; headers?: Record<string, string>; body?: string; status: number; error: RegExp; header?: [string, RegExp] }> = [
      { what: "no token", headers: { "content-type": "application/json" }, body: good, status: 401, error: /missing token.*Authorization: Bearer/, header: ["www-authenticate", /^Bearer/] },
      { what: "wrong token", headers: { ...auth, authorization: "Bearer not-the-token" }, body: good, status: 401, error: /wrong token/ },
      { what: "token with one more character", headers: { ...auth, authorization: `Bearer ${TOKEN}x` }, body: good, status: 401, error: /wrong token/ },
      { what: "basic auth instead of a bearer token", headers: { ...auth, authorization: "Basic dXNlcjpwYXNz" }, body: good, status: 401, error: /malformed Authorization header/ },
      { what: "not JSON", headers: auth, body: "title=Done&status=completed", status: 400, error: /body is not JSON/ },
      { what: "empty body", headers: auth, body: "", status: 400, error: /empty body/ },
      { what: "a JSON array", headers: auth, body: "[1,2]", status: 400, error: /must be a JSON object/ },
      { what: "a JSON string", headers: auth, body: '"hello"', status: 400, error: /must be a JSON object/ },
      { what: "no title", headers: auth, body: JSON.stringify({ message: "m", status: "completed" }), status: 400, error: /invalid field: title is required/ },
      { what: "title of the wrong type", headers: auth, body: JSON.stringify({ title: 5, status: "completed" }), status: 400, error: /title/ },
      { what: "empty title", headers: auth, body: JSON.stringify({ title: "  ", status: "completed" }), status: 400, error: /title must not be empty/ },
      { what: "no status", headers: auth, body: JSON.stringify({ title: "t" }), status: 400, error: /invalid field: status is required/ },
      { what: "a sentence for status", headers: auth, body: JSON.stringify({ title: "t", status: "All Done!" }), status: 400, error: /status must be a short lower-case word/ },
      { what: "a session id with spaces", headers: auth, body: JSON.stringify({ title: "t", status: "completed", sessionId: "ses x" }), status: 400, error: /sessionId must not contain spaces/ },
      { what: "a message too long", headers: auth, body: JSON.stringify({ title: "t", status: "completed", message: "x".repeat(5000) }), status: 400, error: /message must be at most 4000 characters/ },
      { what: "two bad fields", headers: auth, body: JSON.stringify({ title: "", status: 7 }), status: 400, error: /invalid fields: title .*; status / },
      { what: "GET on /notify", method: "GET", headers: auth, status: 405, error: /method GET is not allowed on \/notify: use POST/, header: ["allow", /^POST$/] },
      { what: "PUT on /notify", method: "PUT", headers: auth, body: good, status: 405, error: /use POST/ },
      { what: "DELETE on /health", method: "DELETE", path: "/health", status: 405, error: /use GET/, header: ["allow", /GET/] },
      { what: "POST on /metrics", method: "POST", path: "/metrics", body: "{}", status: 405, error: /use GET/ },
      { what: "an unknown path", method: "GET", path: "/admin", status: 404, error: /no such endpoint: GET \/admin/ },
      { what: "a path below /notify", method: "POST", path: "/notify/x", headers: auth, body: good, status: 404, error: /no such endpoint/ },
    ];
    for (const c of cases) {
      const res = await call(port, c.method ?? "POST", c.path ?? "/notify", { headers: c.headers ?? {}, ...(c.body !== undefined ? { body: c.body } : {}) });
      assert.equal(res.status, c.status, `${c.what}: status ${res.status} ${res.text}`);
      assert.match(String(res.headers["content-type"]), /^application\/json/, `${c.what}: JSON answer`);
      assert.equal(typeof res.json.error, "string", `${c.what}: has an error`);
      assert.match(String(res.json.error), c.error, `${c.what}: ${String(res.json.error)}`);
      if (c.header) assert.match(String(res.headers[c.header[0]]), c.header[1], `${c.what}: header ${c.header[0]}`);
    }
    const fieldAnswer = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "", status: 7 }) });
    assert.deepEqual(Object.keys(fieldAnswer.json.fields as object).sort(), ["status", "title"], "the answer lists each bad field");
    assert.equal(sent.length, 0, "nothing reached Matrix");
    const health = await call(port, "GET", "/health");
    assert.equal(health.status, 200);
  });

  test("a body over 64 KiB is refused with 413 without reading it all", async (t) => {
    const big = Buffer.alloc(64 * 1024 + 10, 0x61);
    const declared = await call(port, "POST", "/notify", { headers: auth, body: big });
    assert.equal(declared.status, 413);
    assert.match(String(declared.json.error), /body too large: 65546 bytes, the limit is 65536 bytes/);

    // No content-length: the body streams on and on; the answer comes after 64 KiB, not at the end.
    const streamed = await new Promise<{ status: number; error: string; bytesWritten: number }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, method: "POST", path: "/notify", headers: { ...auth, "transfer-encoding": "chunked" } });
      let written = 0;
      let stop = false;
      const chunk = Buffer.alloc(16 * 1024, 0x62);
      const pump = (): void => {
        while (!stop && written < 50 * 1024 * 1024) {
          written += chunk.length;
          if (!req.write(chunk)) {
            req.once("drain", pump);
            return;
          }
        }
      };
      req.on("response", (res) => {
        stop = true;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, error: (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { error: string }).error, bytesWritten: written });
        });
      });
      req.on("error", (err) => {
        if (!stop) reject(err);
      });
      pump();
    });
    t.diagnostic(`the client had written ${(streamed.bytesWritten / 1024).toFixed(0)} KiB when the 413 came`);
    assert.equal(streamed.status, 413);
    assert.match(streamed.error, /body too large: more than 65536 bytes/);
    assert.ok(streamed.bytesWritten < 50 * 1024 * 1024, `answered before the client finished (${streamed.bytesWritten} bytes written)`);
    const health = await call(port, "GET", "/health");
    assert.equal(health.status, 200, "still answering after the oversized bodies");
  });

  test("notify with no thread and no default room answers 404; a disabled notify says how to enable it", async () => {
    defaultRoom = undefined;
    try {
      const res = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "t", status: "completed", sessionId: "ses_unknown" }) });
      assert.equal(res.status, 404);
      assert.match(String(res.json.error), /session ses_unknown has no thread in Matrix and notify\.defaultRoom is not set/);
      const noSession = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "t", status: "completed" }) });
      assert.equal(noSession.status, 404);
      assert.match(String(noSession.json.error), /no sessionId/);
    } finally {
      defaultRoom = ROOM;
    }
    const disabled = await call(disabledPort, "POST", "/notify", { headers: auth, body: "{}" });
    assert.equal(disabled.status, 404);
    assert.match(String(disabled.json.error), /notify is disabled: set notify\.token/);
    const noMetrics = await call(disabledPort, "GET", "/metrics");
    assert.equal(noMetrics.status, 404);
  });

  test("a notification goes to the default room, or to the session's thread, and skips what the bot streams itself", async () => {
    sent.length = 0;
    const res = await call(port, "POST", "/notify", {
      headers: auth,
      body: JSON.stringify({ title: "OpenCode session completed", message: "Session completed in /w", taskId: "ses_outside", status: "completed", extra: 1 }),
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { posted: true, eventId: "$event1", roomId: ROOM });
    assert.equal(sent[0]?.roomId, ROOM);
    assert.equal(sent[0]?.content.msgtype, "m.notice");
    assert.equal(sent[0]?.content.body, "🔔 From OpenCode (notify): ✅ **OpenCode session completed** — Session completed in /w\n\nsession `ses_outside`");
    assert.match(String(sent[0]?.content.formatted_body), /<strong>OpenCode session completed<\/strong>/);
    assert.deepEqual(sent[0]?.content["m.mentions"], { user_ids: [] }, "a notice pings nobody");
    assert.equal(sent[0]?.content["m.relates_to"], undefined, "top level in the default room");

    threads.insert({ roomId: "!r:x", rootEventId: "$root", backend: "opencode", sessionId: "ses_mapped", title: "t", startedBy: "@a:x" });
    const inThread = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "Failed", message: "boom", status: "error", sessionId: "ses_mapped" }) });
    assert.equal(inThread.status, 200, inThread.text);
    assert.equal(inThread.json.roomId, "!r:x");
    assert.equal(inThread.json.threadRoot, "$root");
    const rel = sent[1]?.content["m.relates_to"] as { rel_type: string; event_id: string; "m.in_reply_to": { event_id: string } };
    assert.deepEqual([rel.rel_type, rel.event_id, rel["m.in_reply_to"].event_id], ["m.thread", "$root", "$root"]);
    assert.equal(sent[1]?.content.body, "🔔 From OpenCode (notify): ⚠️ **Failed** — boom");

    streaming.add("ses_mapped");
    const busy = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "Done", status: "completed", sessionId: "ses_mapped" }) });
    assert.equal(busy.status, 200);
    assert.equal(busy.json.posted, false);
    assert.match(String(busy.json.reason), /streaming session ses_mapped/);
    const permission = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "Permission", status: "permission", sessionId: "ses_mapped" }) });
    assert.equal(permission.json.posted, false);
    const custom = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "Deployed", status: "deploy", sessionId: "ses_mapped" }) });
    assert.equal(custom.json.posted, true, "a status the bot does not stream itself still goes through");
    streaming.delete("ses_mapped");
    const permissionIdle = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "Permission", status: "permission", sessionId: "ses_mapped" }) });
    assert.equal(permissionIdle.json.posted, false, "the permission desk asks in the thread itself");
    assert.match(String(permissionIdle.json.reason), /asks for session ses_mapped's permissions in its thread itself/);

    const turn = turns.start({ roomId: "!r:x", rootEventId: "$root", sessionId: "ses_mapped", promptEventId: "$p", promptMessageId: null, promptedBy: "@a:x", promptText: "x" });
    turns.finish(turn.id, "done");
    const justDone = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "Done", status: "completed", sessionId: "ses_mapped" }) });
    assert.equal(justDone.json.posted, false, "the completion of a turn the bot has just finished repeats its reply");
    assert.match(String(justDone.json.reason), /has just posted the reply/);

    failSend = true;
    try {
      const failed = await call(port, "POST", "/notify", { headers: auth, body: JSON.stringify({ title: "x", status: "info" }) });
      assert.equal(failed.status, 502);
      assert.match(String(failed.json.error), /could not post to Matrix room !default:example\.org: M_FORBIDDEN/);
    } finally {
      failSend = false;
    }
    const text = await metrics.text();
    const e = parseExposition(text);
    assert.ok((sampleValue(e, "bot_notify_requests_total", { outcome: "posted" }) ?? 0) >= 3);
    assert.ok((sampleValue(e, "bot_notify_requests_total", { outcome: "skipped" }) ?? 0) >= 3);
    assert.ok((sampleValue(e, "bot_notify_requests_total", { outcome: "rejected" }) ?? 0) >= 10);
    assert.equal(sampleValue(e, "bot_notify_requests_total", { outcome: "failed" }), 1);
  });

  test("/health is 503 naming the part that is not usable", async () => {
    healthReport = { ok: false, matrix: { ok: true }, opencode: [{ ok: true, url: "a" }, { ok: false, url: "b", error: "connection refused" }], database: { ok: true } };
    try {
      const res = await call(port, "GET", "/health");
      assert.equal(res.status, 503);
      assert.deepEqual(res.json.failing, ["opencode"]);
      assert.match(String(res.json.error), /not usable: opencode/);
      const head = await call(port, "HEAD", "/health");
      assert.equal(head.status, 503);
      assert.equal(head.text, "");
    } finally {
      healthReport = { ok: true, matrix: { ok: true }, opencode: [{ ok: true }], database: { ok: true } };
    }
  });

  test("the notify token never reaches the log", () => {
    const all = logText.join("");
    assert.ok(all.includes("HTTP request refused"), "refusals are logged");
    assert.ok(!all.includes(TOKEN), "the token is not in the log");
  });

  test("tokens compare equal only when identical", () => {
    assert.equal(tokenMatches(TOKEN, TOKEN), true);
    assert.equal(tokenMatches(TOKEN.slice(0, -1), TOKEN), false);
    assert.equal(tokenMatches("", TOKEN), false);
    assert.equal(tokenMatches(`${TOKEN}x`, TOKEN), false);
  });
});
