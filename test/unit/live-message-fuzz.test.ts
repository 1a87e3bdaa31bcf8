import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { LiveMessage } from "../../src/render/live-message.ts";
import { RateLimitedError } from "../../src/matrix/rate-limit.ts";
import type { MessageContent } from "../../src/matrix/content.ts";
import { mulberry32, seededRandom } from "../harness/seeded-random.ts";

// Random streams against a homeserver stand-in that answers 429 (with a wait), fails, or is
// slow, at random, from the very first post on. Whatever happens: the final state arrives,
// nothing is sent while the homeserver asked to wait, no state is sent twice, and states only
// move forward. Seeded: FUZZ_SEED=<n> replays a run.

const { seed, rand } = seededRandom(424_242);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = pino({ level: "silent" });
const target = { roomId: "!r:x", threadRoot: "$root", replyTo: "$root" };

interface Scenario {
  windowMs: number;
  updates: number;
  gapMs: number;
  limitP: number;
  failP: number;
  retryAfterMs: number;
  latencyMs: number;
  firstLimited: boolean;
}

async function run(sc: Scenario, rand: () => number): Promise<void> {
  const sent: Array<{ body: string; at: number }> = [];
  let blockedUntil = 0;
  let early = 0;
  let requests = 0;
  let errors = 0;
  const homeserver = {
    async send(_room: string, content: MessageContent): Promise<string> {
      const at = Date.now();
      requests++;
      // Timers may fire a millisecond early by Date.now()'s rounding.
      if (at < blockedUntil - 2) early++;
      await sleep(rand() * sc.latencyMs);
      const limited = (requests === 1 && sc.firstLimited) || rand() < sc.limitP;
      if (limited) {
        errors++;
        blockedUntil = Date.now() + sc.retryAfterMs;
        throw new RateLimitedError(sc.retryAfterMs);
      }
      if (rand() < sc.failP) {
        errors++;
        throw new Error("socket hang up");
      }
      const nc = content["m.new_content"] as { body: string } | undefined;
      sent.push({ body: nc ? nc.body : String(content.body), at });
      return "$reply";
    },
  };
  const live = new LiveMessage({ sender: homeserver, target, windowMs: sc.windowMs, log });
  const t0 = Date.now();
  for (let i = 1; i <= sc.updates; i++) {
    live.update(`state ${i}`);
    if (sc.gapMs > 0) await sleep(rand() * sc.gapMs);
  }
  await live.finish("final");
  const ms = Date.now() - t0;
  const what = `${JSON.stringify(sc)}: ${requests} requests, ${errors} errors, sent ${sent.map((s) => s.body).join(" | ")}`;

  assert.equal(sent.at(-1)?.body, "final", `the final state arrives last — ${what}`);
  assert.equal(early, 0, `${early} requests while the homeserver had asked to wait — ${what}`);
  const bodies = sent.map((s) => s.body);
  assert.equal(new Set(bodies).size, bodies.length, `a state was sent twice — ${what}`);
  const order = bodies.map((b) => (b === "final" ? Infinity : Number(b.slice(6))));
  for (let i = 1; i < order.length; i++) assert.ok((order[i] ?? 0) > (order[i - 1] ?? 0), `a stale state was sent after a newer one — ${what}`);
  // Coalesced: about one request per window plus one per error, never one per update.
  const bound = Math.ceil(ms / sc.windowMs) + errors + 3;
  assert.ok(requests <= bound, `${requests} requests in ${ms} ms (bound ${bound}) — ${what}`);
}

test(`LiveMessage under random 429s, failures and latency: final state, waits honoured, nothing stale or twice (seed ${seed})`, async () => {
  const scenarios: Scenario[] = Array.from({ length: 40 }, (_, i) => ({
    windowMs: 10 + Math.floor(rand() * 40),
    updates: 1 + Math.floor(rand() * 60),
    gapMs: Math.floor(rand() * 8),
    limitP: rand() * 0.5,
    failP: rand() * 0.2,
    retryAfterMs: 5 + Math.floor(rand() * 60),
    latencyMs: Math.floor(rand() * 8),
    firstLimited: i % 3 === 0,
  }));
  // Independent messages: run them side by side to keep the test short.
  await Promise.all(scenarios.map((sc, i) => run(sc, mulberry32(seed + i + 1))));
});

test("a 429 on the very first post is waited out, not retried in a loop", async () => {
  let requests = 0;
  const homeserver = {
    async send(): Promise<string> {
      requests++;
      if (requests === 1) throw new RateLimitedError(200);
      return "$reply";
    },
  };
  const live = new LiveMessage({ sender: homeserver, target, windowMs: 20, log });
  live.update("hello");
  await sleep(150);
  assert.equal(requests, 1, "no request before the wait the homeserver asked for is over");
  await live.finish("hello, world");
  assert.equal(requests, 2, "then the newest state, once");
});

test("a homeserver that is down is not hammered while the first post keeps failing", async () => {
  let requests = 0;
  let down = true;
  const homeserver = {
    async send(): Promise<string> {
      requests++;
      if (down) throw new Error("connect ECONNREFUSED");
      return "$reply";
    },
  };
  const live = new LiveMessage({ sender: homeserver, target, windowMs: 25, log });
  live.update("hello");
  await sleep(300);
  // One try, then one per back-off (twice the window): about 6, certainly not hundreds.
  assert.ok(requests <= 10, `${requests} requests in 300 ms against a homeserver that is down`);
  down = false;
  await live.finish("back");
});
