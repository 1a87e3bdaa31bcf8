import { test } from "node:test";
import assert from "node:assert/strict";
import { EditBudget } from "../../src/matrix/edit-budget.ts";
import { DroppedRequestError, inLane, RequestLanes } from "../../src/matrix/request-lanes.ts";
import { LiveMessage } from "../../src/render/live-message.ts";
import type { MatrixSender } from "../../src/matrix/sender.ts";
import type { MessageContent } from "../../src/matrix/content.ts";
import { createLogger } from "../../src/log.ts";

const log = createLogger("silent");

/** A homeserver whose answers the test releases one by one, recording the order requests reached it. */
function gatedServer() {
  const reached: string[] = [];
  const pending: Array<() => void> = [];
  return {
    reached,
    request: (name: string) => () =>
      new Promise<string>((resolve) => {
        reached.push(name);
        pending.push(() => resolve(name));
      }),
    answerOne: async () => {
      pending.shift()?.();
      await new Promise((r) => setImmediate(r));
    },
    get open() {
      return pending.length;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

test("beyond maxInFlight requests wait, and go by lane: an outage notice, then urgent, first posts, edits, background, in order within a lane", async () => {
  const lanes = new RequestLanes({ maxInFlight: 1 });
  const hs = gatedServer();
  const all = [
    lanes.run(hs.request("busy")),
    inLane("background", () => lanes.run(hs.request("typing"))),
    inLane("edit", () => lanes.run(hs.request("edit 1"))),
    inLane("edit", () => lanes.run(hs.request("edit 2"))),
    inLane("first", () => lanes.run(hs.request("first post"))),
    lanes.run(hs.request("👀")),
    inLane("urgent", () => lanes.run(hs.request("final"))),
    inLane("alarm", () => lanes.run(hs.request("server lost"))),
  ];
  await tick();
  assert.deepEqual(hs.reached, ["busy"], "one at a time");
  assert.deepEqual(lanes.queued, { alarm: 1, urgent: 2, first: 1, edit: 2, background: 1 });
  for (let i = 0; i < 8; i++) await hs.answerOne();
  await Promise.all(all);
  assert.deepEqual(hs.reached, ["busy", "server lost", "👀", "final", "first post", "edit 1", "edit 2", "typing"]);
});

test("a held slot runs its work's requests at once; a waiting ticket raised to urgent overtakes the queue", async () => {
  const lanes = new RequestLanes({ maxInFlight: 1 });
  const hs = gatedServer();
  const busy = lanes.run(hs.request("busy"));
  const edit = inLane("edit", () => lanes.run(hs.request("other edit")));
  const ticket = { lane: "edit" as const } as { lane: "edit" | "urgent" };
  const held = lanes.hold(ticket, async () => {
    // Inside the slot: both go out without waiting for another.
    const a = lanes.run(hs.request("held 1"));
    const b = lanes.run(hs.request("held 2"));
    await tick();
    await hs.answerOne();
    await hs.answerOne();
    return [await a, await b];
  });
  await tick();
  ticket.lane = "urgent";
  await hs.answerOne(); // busy done: the raised ticket goes before the edit queued earlier
  assert.deepEqual(await held, ["held 1", "held 2"]);
  await hs.answerOne();
  await Promise.all([busy, edit]);
  assert.deepEqual(hs.reached, ["busy", "held 1", "held 2", "other edit"]);
});

test("a request with maxWaitMs still waiting after it is dropped, never sent", async () => {
  const lanes = new RequestLanes({ maxInFlight: 1 });
  const hs = gatedServer();
  const busy = lanes.run(hs.request("busy"));
  const typing = inLane({ lane: "background", maxWaitMs: 20 }, () => lanes.run(hs.request("typing")));
  const keepAlive = setTimeout(() => undefined, 1000); // the lanes' own timer does not hold the process
  await assert.rejects(typing, DroppedRequestError);
  clearTimeout(keepAlive);
  await hs.answerOne();
  await busy;
  assert.deepEqual(hs.reached, ["busy"]);
});

test("the edit window: the base for one reply; wider with many replies on a slow homeserver, capped; doubled by a 429, narrowing again", () => {
  let now = 0;
  const budget = new EditBudget({ baseMs: 1000, maxMs: 20_000, maxInFlight: 6, now: () => now });
  const one = {};
  budget.observe(50);
  assert.equal(budget.windowFor(one), 1000);
  const many = Array.from({ length: 100 }, () => ({}));
  for (let i = 0; i < 20; i++) budget.observe(300);
  for (const s of many) budget.windowFor(s);
  // 101 replies × ~300 ms / (6 slots × half of them for edits) ≈ 10 s
  const wide = budget.windowFor(one);
  assert.ok(wide > 8000 && wide < 11_000, `wide window ${wide}`);
  budget.rateLimited();
  assert.equal(budget.windowFor(one), 20_000, "a 429 doubles it, up to the cap");
  // The replies finish; 10 s later the 429 penalty has halved away and nobody else streams.
  for (const s of many) budget.done(s);
  now += 10_001;
  for (let i = 0; i < 30; i++) budget.observe(40);
  assert.equal(budget.windowFor(one), 1000);
  // Replies that stopped asking for edits stop counting after 10 s.
  for (const s of many) budget.windowFor(s);
  for (let i = 0; i < 30; i++) budget.observe(300);
  now += 11_000;
  assert.equal(budget.windowFor(one), 1000);
});

test("a live message's edit waiting for its turn carries the newest text, and finish sends the final text in that same request", async () => {
  const lanes = new RequestLanes({ maxInFlight: 1 });
  const hs = gatedServer();
  const sent: string[] = [];
  const sender = {
    hold: <T>(ticket: { lane: "alarm" | "urgent" | "first" | "edit" | "background" }, work: () => Promise<T>) => lanes.hold(ticket, work),
    send: async (_room: string, content: MessageContent) => {
      const body = String((content["m.new_content"] as { body?: string } | undefined)?.body ?? content.body);
      sent.push(body);
      return lanes.run(hs.request(body)).then(() => "$reply");
    },
  } as unknown as Pick<MatrixSender, "send" | "hold">;
  const live = new LiveMessage({ sender, target: { roomId: "!r", threadRoot: "$root", replyTo: "$root" }, windowMs: 10, log });
  const busy = lanes.run(hs.request("someone else's request"));
  live.update("first words");
  await new Promise((r) => setTimeout(r, 5));
  live.update("first words and more");
  await tick();
  assert.deepEqual(sent, [], "the first post waits for a slot");
  const finished = live.finish("first words and more. The end.");
  await hs.answerOne(); // the slot frees: the first post goes, with the final text, at once
  await tick();
  await hs.answerOne();
  await finished;
  await busy;
  assert.deepEqual(sent, ["first words and more. The end."], "one request: nothing stale, nothing twice");
});
