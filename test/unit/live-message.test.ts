import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { LiveMessage } from "../../src/render/live-message.ts";
import { RateLimitedError } from "../../src/matrix/rate-limit.ts";
import type { MessageContent } from "../../src/matrix/content.ts";

// A homeserver stand-in that records what arrives and can answer 429: the one fault a unit
// test needs to cause on demand. The real homeserver's limits are exercised end to end.
function recorder(opts: { limitEvery?: number; retryAfterMs?: number; latencyMs?: number } = {}) {
  const sent: Array<{ body: string; edit: boolean }> = [];
  let calls = 0;
  return {
    sent,
    get calls() {
      return calls;
    },
    async send(_room: string, content: MessageContent): Promise<string> {
      calls++;
      await new Promise((r) => setTimeout(r, opts.latencyMs ?? 5));
      if (opts.limitEvery && calls % opts.limitEvery === 0) throw new RateLimitedError(opts.retryAfterMs ?? 50);
      const nc = content["m.new_content"] as { body: string } | undefined;
      sent.push({ body: nc ? nc.body : (content.body as string), edit: nc !== undefined });
      return "$event";
    },
  };
}

const target = { roomId: "!r:x", threadRoot: "$root", replyTo: "$root" };
const log = pino({ level: "silent" });

test("the first state is posted at once, later ones coalesce into one edit per window", async () => {
  const hs = recorder();
  const live = new LiveMessage({ sender: hs, target, windowMs: 100, log });
  live.update("a");
  for (let i = 0; i < 100 && hs.sent.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(hs.sent, [{ body: "a", edit: false }]);
  for (let i = 0; i < 30; i++) {
    live.update(`a${"b".repeat(i)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await live.finish("final text");
  assert.equal(hs.sent.at(-1)?.body, "final text");
  // 300 ms of updates at a 100 ms window: the first post, about three edits, the final one.
  assert.ok(hs.sent.length <= 6, `too many requests: ${hs.sent.length}`);
  assert.ok(hs.sent.length >= 3);
});

test("rate limits drop intermediate states and the final state still arrives", async () => {
  const hs = recorder({ limitEvery: 2, retryAfterMs: 40 });
  const live = new LiveMessage({ sender: hs, target, windowMs: 20, log });
  for (let i = 0; i < 50; i++) {
    live.update(`step ${i}`);
    await new Promise((r) => setTimeout(r, 4));
  }
  await live.finish("the end");
  assert.equal(hs.sent.at(-1)?.body, "the end");
  const bodies = hs.sent.map((s) => s.body);
  assert.ok(bodies.length < 25, `states were queued instead of dropped: ${bodies.length}`);
  assert.equal(new Set(bodies).size, bodies.length, "a state was sent twice");
});

test("finish with nothing new sends nothing more", async () => {
  const hs = recorder();
  const live = new LiveMessage({ sender: hs, target, windowMs: 50, log });
  await live.finish("done");
  await live.finish("done");
  assert.equal(hs.calls, 1);
});
