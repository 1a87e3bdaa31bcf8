import { test } from "node:test";
import assert from "node:assert/strict";
import { BotMetrics } from "../../src/http/metrics.ts";
import { RequestLanes, inLane } from "../../src/matrix/request-lanes.ts";
import { parseExposition, sampleValue } from "./http-exposition.ts";

test("the metrics are valid Prometheus text with the bot's counters, gauge and process metrics", async () => {
  const m = new BotMetrics();
  const counters = { requests: 0, edits: 0 };
  let active = 0;
  m.observe({ sendCounters: counters, activeSessions: () => active });

  let e = parseExposition(await m.text());
  assert.equal(sampleValue(e, "bot_turns_total", { outcome: "done" }), 0, "outcomes are there from the start");
  assert.equal(sampleValue(e, "bot_turns_total", { outcome: "failed" }), 0);
  assert.equal(e.types.get("bot_turns_total"), "counter");
  assert.equal(e.types.get("bot_active_sessions"), "gauge");
  assert.ok(e.types.has("process_cpu_user_seconds_total"), "default process metrics");
  assert.ok(e.types.has("nodejs_eventloop_lag_seconds"));

  m.turnEnded("done");
  m.turnEnded("done");
  m.turnEnded("failed");
  m.rateLimited();
  m.opencodeReconnected();
  counters.requests = 7;
  counters.edits = 4;
  active = 2;
  e = parseExposition(await m.text());
  assert.equal(sampleValue(e, "bot_turns_total", { outcome: "done" }), 2);
  assert.equal(sampleValue(e, "bot_turns_total", { outcome: "failed" }), 1);
  assert.equal(sampleValue(e, "bot_matrix_requests_total"), 7);
  assert.equal(sampleValue(e, "bot_matrix_edits_total"), 4);
  assert.equal(sampleValue(e, "bot_matrix_rate_limited_total"), 1);
  assert.equal(sampleValue(e, "bot_opencode_reconnects_total"), 1);
  assert.equal(sampleValue(e, "bot_active_sessions"), 2);

  counters.requests = 9;
  active = 0;
  e = parseExposition(await m.text());
  assert.equal(sampleValue(e, "bot_matrix_requests_total"), 9, "a mirrored counter follows its source");
  assert.equal(sampleValue(e, "bot_active_sessions"), 0);
  assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
});

test("two bots in one process keep separate counts", async () => {
  const a = new BotMetrics({ defaultMetrics: false });
  const b = new BotMetrics({ defaultMetrics: false });
  a.turnEnded("done");
  assert.equal(sampleValue(parseExposition(await a.text()), "bot_turns_total", { outcome: "done" }), 1);
  assert.equal(sampleValue(parseExposition(await b.text()), "bot_turns_total", { outcome: "done" }), 0);
});

test("the exposition reader rejects what Prometheus would", () => {
  assert.throws(() => parseExposition("metric{a=b} 1\n"), /not quoted/);
  assert.throws(() => parseExposition("metric one\n"), /bad value/);
  assert.throws(() => parseExposition("# TYPE m counter\n# TYPE m gauge\n"), /second TYPE/);
  assert.throws(() => parseExposition("m 1"), /newline/);
  assert.deepEqual(parseExposition('m{a="x\\"y"} +Inf\n').samples, [{ name: "m", labels: { a: 'x"y' }, value: Infinity }]);
});

test("bot_matrix_requests_waiting: the requests waiting for a homeserver slot, per lane", async () => {
  const m = new BotMetrics({ defaultMetrics: false });
  const lanes = new RequestLanes({ maxInFlight: 1 });
  m.observe({ matrixWaiting: () => lanes.queued });
  let e = parseExposition(await m.text());
  assert.equal(sampleValue(e, "bot_matrix_requests_waiting", { lane: "urgent" }), 0, "every lane is there while nothing waits");
  assert.equal(sampleValue(e, "bot_matrix_requests_waiting", { lane: "edit" }), 0);

  let open: () => void = () => {};
  const busy = new Promise<void>((r) => (open = r));
  const running = [lanes.run(() => busy)]; // holds the only slot
  running.push(inLane("edit", () => lanes.run(async () => undefined)), inLane("edit", () => lanes.run(async () => undefined)), inLane("urgent", () => lanes.run(async () => undefined)));
  e = parseExposition(await m.text());
  assert.equal(sampleValue(e, "bot_matrix_requests_waiting", { lane: "edit" }), 2);
  assert.equal(sampleValue(e, "bot_matrix_requests_waiting", { lane: "urgent" }), 1);
  open();
  await Promise.all(running);
  e = parseExposition(await m.text());
  assert.equal(sampleValue(e, "bot_matrix_requests_waiting", { lane: "edit" }), 0);
});
