import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { rememberOpencodeReached } from "../../src/opencode/server-check.ts";
import { openDatabase } from "../../src/store/db.ts";
import { KeyValue } from "../../src/store/key-value.ts";
import { BotProcess } from "../harness/bot-process.ts";
import { freePort } from "../harness/net.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { registerUser } from "../harness/synapse.ts";
import { parseExposition, sampleValue, type Exposition } from "../unit/http-exposition.ts";
import { TestEnv, waitForFinalReply } from "./env.ts";

// The bot's own endpoints on the real bot process: /health when everything is up and when
// OpenCode is not (a second bot pointed at a dead OpenCode URL), /metrics after a turn, and
// /notify refusing bad requests with a reason while the bot keeps running.

const token = `http-e2e-${randomBytes(12).toString("hex")}`;
let env: TestEnv;
let deadBot: BotProcess | undefined;
let deadUrl = "";

before(async () => {
  const stack = loadStackInfo();
  deadUrl = `http://127.0.0.1:${await freePort()}`;
  // Its own account (two processes on one account would both answer), no room, its own database.
  const startDead = async (): Promise<BotProcess> => {
    const account = await registerUser(stack.synapse.baseUrl, stack.synapse.sharedSecret, `bot-deadoc-${Date.now().toString(36)}`);
    const dataDir = mkdtempSync(join(stack.workDir, "bot-deadoc-"));
    // A bot that has reached this OpenCode before (at a first start an unreachable URL stops it):
    // it starts, and keeps trying.
    const db = openDatabase(join(dataDir, "bot.db"));
    rememberOpencodeReached(new KeyValue(db), deadUrl);
    db.close();
    return BotProcess.start({
      MATRIX_HOMESERVER_URL: stack.synapse.baseUrl,
      MATRIX_ACCESS_TOKEN: account.accessToken,
      BOT_ALLOWED_USERS: "@nobody:localhost",
      OPENCODE_SERVER_URL: deadUrl,
      OPENCODE_WORKSPACE_DIR: stack.workspaceDir,
      OPENCODE_SERVER_RETRY_DELAY_MS: "200",
      BOT_DATABASE_PATH: join(dataDir, "bot.db"),
      BOT_HTTP_PORT: "0",
      LOG_LEVEL: "debug",
      BOT_CONFIG: "/dev/null",
    }, 60_000);
  };
  // The dead-OpenCode bot waits its 15 s for OpenCode before it is ready: boot both at once.
  const [e, d] = await Promise.all([TestEnv.create({ name: "http", botEnv: { BOT_NOTIFY_TOKEN: token } }), startDead()]);
  env = e;
  deadBot = d;
});
after(async () => {
  await deadBot?.stop();
  await env?.close();
});

const base = (): string => `http://127.0.0.1:${env.bot.httpPort}`;

async function getJson(url: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, init);
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: res.status, body: { text } };
  }
}

/** Asks until `ready` holds (a bot's first sync may still be on its way), then gives the last answer. */
async function healthWhen(url: string, ready: (body: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<{ status: number; body: Record<string, unknown> }> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const answer = await getJson(url);
    if (ready(answer.body) || Date.now() > end) return answer;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const matrixOk = (body: Record<string, unknown>): boolean => (body.matrix as { ok?: boolean } | undefined)?.ok === true;

describe("the bot's HTTP endpoints", () => {
  test("/health is 200 when Matrix, OpenCode and the database are usable", async () => {
    const { status, body } = await healthWhen(`${base()}/health`, (b) => b.ok === true);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.ok, true);
    assert.equal((body.matrix as { ok: boolean }).ok, true);
    assert.equal((body.database as { ok: boolean }).ok, true);
    const [oc] = body.opencode as Array<{ ok: boolean; url: string; state: string }>;
    assert.deepEqual([oc?.ok, oc?.url, oc?.state], [true, env.stack.opencode.url, "connected"]);
  });

  test("/health is 503 and names OpenCode when its server cannot be reached", async () => {
    assert.ok(deadBot);
    const { status, body } = await healthWhen(`http://127.0.0.1:${deadBot.httpPort}/health`, matrixOk);
    assert.equal(status, 503, JSON.stringify(body));
    assert.equal(body.ok, false);
    assert.deepEqual(body.failing, ["opencode"]);
    assert.match(String(body.error), /not usable: opencode/);
    const [oc] = body.opencode as Array<{ ok: boolean; url: string; state: string; error: string | null }>;
    assert.equal(oc?.ok, false);
    assert.equal(oc?.url, deadUrl);
    assert.notEqual(oc?.state, "connected");
    assert.ok(oc?.error, "the connection error is given");
    assert.equal((body.matrix as { ok: boolean }).ok, true, "the other parts are fine");
    assert.equal((body.database as { ok: boolean }).ok, true);
  });

  test("/metrics counts a prompt turn, in valid Prometheus text", async () => {
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc Echo count me");
    await waitForFinalReply(env, root, root, sentAt);
    // Alice can see the final edit a moment before the bot has booked the turn as ended.
    const scrape = async (): Promise<Exposition> => {
      const res = await fetch(`${base()}/metrics`);
      assert.equal(res.status, 200);
      assert.match(String(res.headers.get("content-type")), /^text\/plain; version=0\.0\.4/);
      return parseExposition(await res.text());
    };
    const booked = (x: Exposition): boolean => (sampleValue(x, "bot_turns_total", { outcome: "done" }) ?? 0) >= 1 && sampleValue(x, "bot_active_sessions") === 0;
    let e = await scrape();
    for (const end = Date.now() + 10_000; !booked(e) && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 100));
      e = await scrape();
    }
    assert.ok((sampleValue(e, "bot_turns_total", { outcome: "done" }) ?? 0) >= 1, "a finished turn");
    assert.equal(e.types.get("bot_turns_total"), "counter");
    assert.ok((sampleValue(e, "bot_matrix_requests_total") ?? 0) >= 2, "the reply was sent");
    assert.ok((sampleValue(e, "bot_matrix_edits_total") ?? 0) >= 1, "and edited");
    // Present from the start; their values depend on the machine's load (a slow health check reconnects).
    assert.equal(typeof sampleValue(e, "bot_matrix_rate_limited_total"), "number");
    assert.equal(typeof sampleValue(e, "bot_opencode_reconnects_total"), "number");
    assert.equal(sampleValue(e, "bot_active_sessions"), 0, "nothing streaming now");
    for (const lane of ["alarm", "urgent", "first", "edit", "background"]) assert.equal(typeof sampleValue(e, "bot_matrix_requests_waiting", { lane }), "number", `requests waiting in the ${lane} lane`);
    assert.ok(e.types.has("process_resident_memory_bytes"), "the process metrics");
  });

  test("bad /notify requests get a 4xx with a reason and the bot keeps running", async () => {
    const url = `${base()}/notify`;
    const json = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const good = JSON.stringify({ title: "t", message: "m", status: "completed", sessionId: "ses_nowhere" });
    const cases: Array<{ what: string; init: RequestInit; status: number; error: RegExp }> = [
      { what: "no token", init: { method: "POST", body: good, headers: { "content-type": "application/json" } }, status: 401, error: /missing token/ },
      { what: "wrong token", init: { method: "POST", body: good, headers: { ...json, authorization: "Bearer nope" } }, status: 401, error: /wrong token/ },
      { what: "not JSON", init: { method: "POST", body: "{title: t}", headers: json }, status: 400, error: /body is not JSON/ },
      { what: "missing status", init: { method: "POST", body: JSON.stringify({ title: "t" }), headers: json }, status: 400, error: /status is required/ },
      { what: "oversized", init: { method: "POST", body: "x".repeat(70_000), headers: json }, status: 413, error: /body too large/ },
      { what: "unknown session, no default room", init: { method: "POST", body: good, headers: json }, status: 404, error: /ses_nowhere has no thread .* notify\.defaultRoom is not set/ },
      { what: "wrong method", init: { method: "GET", headers: json }, status: 405, error: /use POST/ },
      { what: "unknown path", init: { method: "POST", body: good, headers: json }, status: 404, error: /no such endpoint/ },
    ];
    for (const c of cases) {
      const { status, body } = await getJson(c.what === "unknown path" ? `${base()}/notifications` : url, c.init);
      assert.equal(status, c.status, `${c.what}: ${JSON.stringify(body)}`);
      assert.match(String(body.error), c.error, c.what);
    }
    const health = await getJson(`${base()}/health`);
    assert.equal(health.status, 200, "still healthy");
    assert.equal(env.bot.proc.exitCode, null, "still running");
    assert.ok(!env.bot.text.includes(token), "the token is not logged");
  });
});
