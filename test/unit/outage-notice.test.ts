import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import { createLogger } from "../../src/log.ts";
import { OpencodeConnection } from "../../src/opencode/connection.ts";
import { TurnNotices, outageNoticeDelayMs } from "../../src/turns/notices.ts";

// A lost OpenCode server is told in the threads of its running turns: at once when a reconnect
// finds nothing listening (the server is gone), after `outageNoticeDelayMs` when it is only slow
// to answer, and not at all when the stream is back before that (a blip).

const log = createLogger("silent");
const retry = { maxRetries: 3, retryDelayMs: 10, healthCheckIntervalMs: 5000 };
const target = { roomId: "!r:x", threadRoot: "$root", replyTo: "$reply" };

function notices(): { n: TurnNotices; posted: string[] } {
  const posted: string[] = [];
  const sender = { send: async (_room: string, content: { body?: unknown }) => (posted.push(String(content.body)), `$e${posted.length}`) };
  const names = { get: async () => undefined };
  return { n: new TurnNotices({ sender: sender as never, names: names as never, log, label: "OpenCode" }), posted };
}

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test("a server that refuses the reconnect is told at once; a blip is told nothing; a slow one after the delay", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const gone = notices();
  gone.n.serverLost([target], retry);
  assert.deepEqual(gone.posted, [], "nothing before it is known to be down");
  gone.n.serverGone();
  await Promise.resolve();
  assert.equal(gone.posted.length, 1);
  assert.match(gone.posted[0] ?? "", /^⚠️ Lost the connection to the OpenCode server\. Reconnecting/);
  gone.n.serverGone();
  t.mock.timers.tick(outageNoticeDelayMs);
  await Promise.resolve();
  assert.equal(gone.posted.length, 1, "told once, not again when the delay passes");

  const blip = notices();
  blip.n.serverLost([target], retry);
  t.mock.timers.tick(outageNoticeDelayMs - 1);
  await blip.n.serverBack();
  t.mock.timers.tick(10);
  await Promise.resolve();
  assert.deepEqual(blip.posted, [], "a stream back within the delay is nobody's news");

  const slow = notices();
  slow.n.serverLost([target], retry);
  t.mock.timers.tick(outageNoticeDelayMs);
  await Promise.resolve();
  assert.equal(slow.posted.length, 1, "an outage that lasts is told after the delay");
  await slow.n.serverBack();
  assert.match(slow.posted[1] ?? "", /^✅ Reconnected to the OpenCode server\./);
});

test("the connection says 'gone' when a reconnect finds nothing listening, not on its first try", async () => {
  // A port that was just free: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
  const conn = new OpencodeConnection({ url: `http://127.0.0.1:${port}`, directory: "/tmp", healthCheckIntervalMs: 60_000, maxRetries: 3, retryDelayMs: 20, requestTimeoutMs: 2000, log });
  const seen: string[] = [];
  conn.onState((s) => seen.push(s));
  conn.onGone(() => seen.push("gone"));
  conn.start();
  for (let i = 0; i < 100 && !seen.includes("gone"); i++) await tick(10);
  await conn.stop();
  assert.deepEqual(seen.slice(0, 2), ["disconnected", "gone"], "the first failure is a disconnect; the refused retry says the server is gone");
  assert.equal(conn.lastError, "connection refused");
});
