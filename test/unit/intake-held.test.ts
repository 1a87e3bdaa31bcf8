import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger } from "../../src/log.ts";
import type { IncomingMessage } from "../../src/matrix/inbound.ts";
import { MessageIntake } from "../../src/matrix/intake.ts";
import { Inbox } from "../../src/store/inbox.ts";
import { openDatabase } from "../../src/store/db.ts";

// At start the sync runs while the backends recover the turns of the last run (app.ts): the
// intake stores what the sync brings at once but handles nothing until it is released, and a
// room's messages from before the restart stay ahead of its new ones.

const message = (id: string, body: string): Record<string, unknown> => ({
  type: "m.room.message", event_id: id, sender: "@alice:x", origin_server_ts: Date.now(), content: { msgtype: "m.text", body },
});

test("held: messages are stored at once, handled only after release, a room's replayed ones first", async () => {
  const inbox = new Inbox(openDatabase(":memory:"));
  const handled: string[] = [];
  const handler = async (m: IncomingMessage): Promise<void> => void handled.push(`${m.roomId} ${m.body}`);
  const log = createLogger("silent");

  // A previous process accepted two messages of room A and stopped before handling them.
  inbox.accept("!a:x", message("$old1", "old one") as Record<string, unknown> & { event_id: string });
  inbox.accept("!a:x", message("$old2", "old two") as Record<string, unknown> & { event_id: string });

  const intake = new MessageIntake({ inbox, handler, log, notBefore: 0, held: true });
  assert.equal(intake.replayPending(), 2);
  intake.accept("!a:x", message("$new1", "new in A"));
  intake.accept("!b:x", message("$new2", "new in B"));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(handled.length, 0, "nothing is handled while held");
  assert.deepEqual(inbox.pending().map((p) => p.eventId).sort(), ["$new1", "$new2", "$old1", "$old2"], "but everything is stored");

  intake.release();
  await intake.drain();
  assert.deepEqual(handled.filter((h) => h.startsWith("!a:x")), ["!a:x old one", "!a:x old two", "!a:x new in A"]);
  assert.deepEqual(handled.filter((h) => h.startsWith("!b:x")), ["!b:x new in B"]);
  assert.deepEqual(inbox.pending(), []);
});

test("not held: handled at once, as every time after the start", async () => {
  const handled: string[] = [];
  const intake = new MessageIntake({ inbox: new Inbox(openDatabase(":memory:")), handler: async (m) => void handled.push(m.body), log: createLogger("silent"), notBefore: 0 });
  intake.accept("!a:x", message("$1", "hello"));
  await intake.drain();
  assert.deepEqual(handled, ["hello"]);
});
