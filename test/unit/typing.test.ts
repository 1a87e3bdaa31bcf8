import { afterEach, beforeEach, test, mock } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { TypingKeeper, type TypingClient } from "../../src/matrix/typing.ts";

// "The bot is typing…": counted holds per room, renewed before the homeserver's timeout
// lapses, one "off" when the last hold ends; with fake timers and a fake client.

type Call = [room: string, typing: boolean, timeoutMs: number | undefined];

function fakeClient(opts: { fail?: boolean; delayFirstMs?: number } = {}): TypingClient & { calls: Call[] } {
  const calls: Call[] = [];
  let n = 0;
  return {
    calls,
    async setTyping(room, typing, timeoutMs) {
      const delayed = n++ === 0 && opts.delayFirstMs !== undefined;
      if (delayed) await new Promise((r) => setTimeout(r, opts.delayFirstMs));
      calls.push([room, typing, timeoutMs]);
      if (opts.fail) throw new Error("M_FORBIDDEN");
    },
  };
}

const debugLines: unknown[] = [];
const log = { debug: (o: unknown) => void debugLines.push(o) };
/** Lets the per-room request chains run (they are promise chains, not timers). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await tick();
};

beforeEach(() => {
  debugLines.length = 0;
  mock.timers.enable({ apis: ["setInterval", "setTimeout", "Date"] });
});
afterEach(() => mock.timers.reset());

test("a hold types at once, renews every 20 s with a 30 s timeout, and the release says 'not typing'", async () => {
  const client = fakeClient();
  const typing = new TypingKeeper(client, log);
  const release = typing.hold("!a");
  await settle();
  assert.deepEqual(client.calls, [["!a", true, 30_000]]);
  mock.timers.tick(19_999);
  await settle();
  assert.equal(client.calls.length, 1, "no renewal before 20 s");
  mock.timers.tick(1);
  await settle();
  mock.timers.tick(20_000);
  await settle();
  assert.deepEqual(client.calls, [["!a", true, 30_000], ["!a", true, 30_000], ["!a", true, 30_000]]);
  release();
  await settle();
  assert.deepEqual(client.calls.at(-1), ["!a", false, 30_000]);
  mock.timers.tick(120_000);
  await settle();
  assert.equal(client.calls.length, 4, "nothing after the release");
  assert.equal(typing.activeRooms, 0);
});

test("holds are counted per room: only the last release stops typing, and a release twice counts once", async () => {
  const client = fakeClient();
  const typing = new TypingKeeper(client, log);
  const r1 = typing.hold("!a");
  const r2 = typing.hold("!a");
  const rb = typing.hold("!b");
  await settle();
  assert.deepEqual(client.calls, [["!a", true, 30_000], ["!b", true, 30_000]], "one 'typing' per room, not per hold");
  r1();
  r1();
  await settle();
  assert.equal(client.calls.length, 2, "the second hold of !a still stands (a double release is ignored)");
  mock.timers.tick(20_000);
  await settle();
  assert.deepEqual(client.calls.slice(2), [["!a", true, 30_000], ["!b", true, 30_000]]);
  r2();
  rb();
  await settle();
  assert.deepEqual(client.calls.slice(4), [["!a", false, 30_000], ["!b", false, 30_000]]);
  const again = typing.hold("!a");
  await settle();
  assert.deepEqual(client.calls.at(-1), ["!a", true, 30_000], "a new hold after the last release types again");
  again();
  await settle();
  assert.equal(typing.activeRooms, 0);
});

test("'off' never overtakes a slow 'on' for the same room", async () => {
  const client = fakeClient({ delayFirstMs: 5_000 });
  const typing = new TypingKeeper(client, log);
  typing.hold("!a")();
  await settle();
  assert.deepEqual(client.calls, []);
  mock.timers.tick(5_000);
  await settle();
  assert.deepEqual(client.calls, [["!a", true, 30_000], ["!a", false, 30_000]]);
});

test("errors are logged at debug and ignored; renewals go on", async () => {
  const client = fakeClient({ fail: true });
  const typing = new TypingKeeper(client, log);
  const release = typing.hold("!a");
  await settle();
  mock.timers.tick(20_000);
  await settle();
  release();
  await settle();
  assert.deepEqual(client.calls.map((c) => c[1]), [true, true, false]);
  assert.equal(debugLines.length, 3);
});

test("bounded: a hold never released stops renewing after maxHoldMs, and rooms beyond maxRooms are not held", async () => {
  const client = fakeClient();
  const typing = new TypingKeeper(client, log, { timeoutMs: 10_000, renewMs: 5_000, maxHoldMs: 20_000, maxRooms: 2 });
  typing.hold("!a");
  typing.hold("!b");
  const none = typing.hold("!c");
  await settle();
  assert.deepEqual(client.calls.map((c) => c[0]), ["!a", "!b"], "the third room is not held");
  none();
  for (let i = 0; i < 10; i++) {
    mock.timers.tick(5_000);
    await settle();
  }
  // Renewals at 5, 10, 15 s; at 20 s the hold is too old and is left to lapse.
  assert.equal(client.calls.filter((c) => c[0] === "!a").length, 4);
  assert.deepEqual(client.calls.at(-1)?.[2], 10_000);
  typing.stop();
  await settle();
  assert.deepEqual(client.calls.slice(-2), [["!a", false, 10_000], ["!b", false, 10_000]], "stop() says 'not typing' everywhere");
  assert.equal(typing.activeRooms, 0);
});
