import { test } from "node:test";
import assert from "node:assert/strict";
import { AccessPolicy } from "../../src/access/policy.ts";
import { DisplayNames } from "../../src/matrix/display-names.ts";
import { BoundedMap } from "../../src/store/bounded-map.ts";

// In-memory state that grows per person, room or event has a bound: caches and notice memory.

test("BoundedMap keeps the most recently used entries, each for its ttl", () => {
  let now = 0;
  const m = new BoundedMap<string, number>({ maxEntries: 3, ttlMs: 100, now: () => now });
  for (const k of ["a", "b", "c"]) m.set(k, 1);
  assert.equal(m.get("a"), 1); // a is now the newest
  m.set("d", 1);
  assert.equal(m.size, 3);
  assert.equal(m.get("b"), undefined, "the least recently used went");
  assert.equal(m.get("a"), 1);
  now = 100;
  assert.equal(m.get("c"), undefined, "expired");
  for (let i = 0; i < 10_000; i++) m.set(`k${i}`, i);
  assert.equal(m.size, 3);
  assert.throws(() => new BoundedMap({ maxEntries: 0 }), RangeError);
});

function fakeMembers(names: Record<string, string>): { client: { getRoomStateEvent: (r: string, t: string, u: string) => Promise<unknown> }; calls: () => number } {
  let calls = 0;
  return {
    client: {
      getRoomStateEvent: (_r: string, _t: string, userId: string) => {
        calls++;
        return Promise.resolve({ membership: "join", displayname: names[userId] });
      },
    },
    calls: () => calls,
  };
}

test("display names: cached, bounded, refreshed after the ttl and by m.room.member events", async () => {
  let now = 0;
  const people: Record<string, string> = { "@alice:x": "Alice", "@bob:x": "Bob" };
  const hs = fakeMembers(people);
  const names = new DisplayNames(hs.client as never, { maxEntries: 100, ttlMs: 10 * 60_000, now: () => now });
  assert.equal(await names.get("!r", "@alice:x"), "Alice");
  assert.equal(await names.get("!r", "@alice:x"), "Alice");
  assert.equal(hs.calls(), 1, "cached");

  // A rename arrives through the sync: attributions use the new name at once, without a request.
  names.onRoomEvent("!r", { type: "m.room.member", state_key: "@alice:x", content: { membership: "join", displayname: "Alice [ops]\nnew" } });
  assert.equal(await names.get("!r", "@alice:x"), "Alice opsnew");
  assert.equal(hs.calls(), 1);
  // Someone not cached is not added by their member event (a large room's joins would crowd the cache).
  names.onRoomEvent("!r", { type: "m.room.member", state_key: "@carol:x", content: { membership: "join", displayname: "Carol" } });
  assert.equal(names.size, 1);
  // Leaving forgets; the next use asks the homeserver again.
  names.onRoomEvent("!r", { type: "m.room.member", state_key: "@alice:x", content: { membership: "leave" } });
  assert.equal(names.size, 0);
  assert.equal(await names.get("!r", "@alice:x"), "Alice");
  assert.equal(hs.calls(), 2);

  // A rename the bot did not see (e.g. while it was down) shows after the ttl.
  people["@alice:x"] = "Alicia";
  now += 10 * 60_000;
  assert.equal(await names.get("!r", "@alice:x"), "Alicia");

  // Bounded: thousands of people in hundreds of rooms, at most maxEntries remembered.
  for (let i = 0; i < 5_000; i++) await names.get(`!room${i % 300}`, `@user${i}:x`);
  assert.equal(names.size, 100);
  // Without a display name: the localpart.
  assert.equal(await names.get("!r", "@nobody:x"), "nobody");
});

test("display names: a small room's members are learnt from the sync response, a large room's are not", async () => {
  const hs = fakeMembers({ "@alice:x": "Alice (asked)", "@dave:x": "Dave (asked)" });
  const names = new DisplayNames(hs.client as never, { maxEntries: 1_000 });
  const member = (user: string, displayname: string, membership = "join"): Record<string, unknown> => ({ type: "m.room.member", state_key: user, sender: user, content: { membership, displayname } });
  const crowd = Array.from({ length: 150 }, (_, i) => member(`@u${i}:x`, `U${i}`));
  names.learnFromSync({
    rooms: {
      join: {
        // A join brings the room's state; its timeline the newest events (a rename wins over the state).
        "!team": { state: { events: [member("@alice:x", "Alice"), member("@bob:x", "Bob"), { type: "m.room.name", state_key: "", content: { name: "x" } }] }, timeline: { events: [member("@bob:x", "Bobby"), member("@carol:x", "Carol", "leave")] } },
        "!big": { state: { events: [...crowd, member("@dave:x", "Dave")] } },
        "!odd": { state: { events: "not a list" }, timeline: null },
      },
    },
  });
  names.learnFromSync(null);
  names.learnFromSync({ rooms: "nonsense" });
  assert.equal(await names.get("!team", "@alice:x"), "Alice");
  assert.equal(await names.get("!team", "@bob:x"), "Bobby");
  assert.equal(hs.calls(), 0, "no request for the members the sync brought");
  assert.equal(await names.get("!big", "@dave:x"), "Dave (asked)", "a large room's members are asked for when named");
  assert.equal(hs.calls(), 1);
  assert.equal(names.size, 3);
});

test("stranger notices: one per interval per person and room, and a bounded memory of them", () => {
  const p = new AccessPolicy(["@alice:x"], 60_000, [], { maxStrangers: 50 });
  assert.ok(p.shouldTellStranger("!r", "@m:x", 1000));
  assert.ok(!p.shouldTellStranger("!r", "@m:x", 2000));
  for (let i = 0; i < 10_000; i++) p.shouldTellStranger(`!r${i % 7}`, `@stranger${i}:x`, 3000);
  assert.equal(p.strangersRemembered, 50);
  // The one who keeps writing stays remembered (each look makes them the most recent).
  const q = new AccessPolicy(["@alice:x"], 60_000, [], { maxStrangers: 3 });
  assert.ok(q.shouldTellStranger("!r", "@spammer:x", 0));
  for (let i = 0; i < 100; i++) {
    q.shouldTellStranger("!r", `@other${i}:x`, 10);
    assert.ok(!q.shouldTellStranger("!r", "@spammer:x", 10), `spammer told again after ${i} others`);
  }
});
