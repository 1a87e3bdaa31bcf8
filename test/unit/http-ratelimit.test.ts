import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startHttpServer } from "../../src/http/server.ts";
import { createLogger } from "../../src/log.ts";
import { Notifier } from "../../src/notify/notifier.ts";
import { openDatabase } from "../../src/store/db.ts";
import { ThreadStore } from "../../src/store/threads.ts";
import { TurnStore } from "../../src/store/turns.ts";

// POST /notify with its token in the agent's hands: rate-limited per token and per session id
// (token buckets, on a clock the test moves), and what it posts names its origin and pings nobody.

const TOKEN = "unit-test-ratelimit-token-0123456789";
const ROOM = "!default:example.org";

describe("/notify rate limits and what it posts", () => {
  const db = openDatabase(":memory:");
  const threads = new ThreadStore(db);
  const turns = new TurnStore(db);
  const sent: Array<Record<string, unknown>> = [];
  const sender = {
    send: async (_roomId: string, content: Record<string, unknown>): Promise<string> => {
      sent.push(content);
      return `$event${sent.length}`;
    },
  };
  const log = createLogger("silent");
  const notifier = new Notifier({ threads, turns, sender, log, isStreaming: () => false, defaultRoom: ROOM });
  let clock = 1_000_000;
  let base = "";
  let close: () => Promise<void> = async () => {};

  before(async () => {
    const s = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      log,
      health: async () => ({ ok: true }),
      notify: { token: TOKEN, deliver: (p) => notifier.deliver(p), perTokenPerMinute: 6, perSessionPerMinute: 3 },
      now: () => clock,
    });
    base = `http://127.0.0.1:${s.port}`;
    close = s.close;
  });
  after(async () => {
    await close();
    db.close();
  });

  const post = async (body: Record<string, unknown>): Promise<{ status: number; retryAfter: string | null; json: Record<string, unknown> }> => {
    const res = await fetch(`${base}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: res.status, retryAfter: res.headers.get("retry-after"), json: (await res.json()) as Record<string, unknown> };
  };
  const note = (sessionId: string, n: number): Record<string, unknown> => ({ title: `note ${n}`, status: "info", sessionId });

  test("one session may post 3 a minute; the 4th gets 429 with Retry-After, other sessions still post", async () => {
    for (let i = 1; i <= 3; i++) assert.equal((await post(note("ses_a", i))).status, 200, `post ${i}`);
    const limited = await post(note("ses_a", 4));
    assert.equal(limited.status, 429);
    // 3 a minute: one earned back every 20 s.
    assert.equal(limited.retryAfter, "20");
    assert.deepEqual(limited.json, {
      error: "rate limited: more than 3 notifications a minute for session ses_a; retry in 20 s",
      limit: "session",
      retryAfterSeconds: 20,
    });
    assert.equal((await post(note("ses_b", 1))).status, 200, "another session is not held back");
    clock += 20_000;
    assert.equal((await post(note("ses_a", 5))).status, 200, "after Retry-After the session posts again");
    clock += 60_000;
  });

  test("the token may post 6 a minute whatever the session ids; the 7th gets 429 naming the token limit", async () => {
    for (let i = 1; i <= 6; i++) assert.equal((await post(note(`ses_t${i}`, i))).status, 200, `post ${i}`);
    const limited = await post(note("ses_t7", 7));
    assert.equal(limited.status, 429);
    assert.equal(limited.retryAfter, "10");
    assert.equal(limited.json.limit, "token");
    assert.equal(limited.json.error, "rate limited: more than 6 notifications a minute with this token; retry in 10 s");
    const before = sent.length;
    assert.equal((await post({ title: "no session", status: "info" })).status, 429, "nor without a session id");
    assert.equal(sent.length, before, "nothing more reached Matrix");
    clock += 10_000;
    assert.equal((await post(note("ses_t8", 8))).status, 200);
    clock += 60_000;
  });

  test("a notice says where it comes from and mentions nobody: no @room, no pills", async () => {
    sent.length = 0;
    const res = await post({
      title: "@room urgent",
      message: 'ping @room and [Alice](https://matrix.to/#/@alice:example.org) <a href="https://matrix.to/#/&#64;bob:example.org">Bob</a>',
      status: "completed",
    });
    assert.equal(res.status, 200);
    const content = sent[0] ?? {};
    const body = String(content.body);
    assert.ok(body.startsWith("🔔 From OpenCode (notify): ✅ **@"), body);
    assert.deepEqual(content["m.mentions"], { user_ids: [] });
    assert.doesNotMatch(body, /@room/, "no @room keyword in the body");
    const html = String(content.formatted_body);
    assert.ok(html.startsWith("<p>🔔 From OpenCode (notify):"), html);
    assert.doesNotMatch(html, /@room/);
    assert.doesNotMatch(html, /<a /, "no link is left to become a pill");
    assert.match(html, /<span>Alice<\/span> <span>Bob<\/span>/, "the names stay, as text");
  });
});
