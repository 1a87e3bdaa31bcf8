import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { LogService, MemoryStorageProvider } from "matrix-bot-sdk";
import { createLogger } from "../../src/log.ts";
import { DurableMatrixClient } from "../../src/matrix/bot-client.ts";
import { guardSyncHandler } from "../../src/matrix/guard.ts";
import type { IncomingMessage } from "../../src/matrix/inbound.ts";
import { MessageIntake } from "../../src/matrix/intake.ts";
import { Inbox } from "../../src/store/inbox.ts";
import { openDatabase } from "../../src/store/db.ts";

// A throw while the bot takes in one event of a sync must not cost the events after it: through
// matrix-bot-sdk's own processSync, with the intake as app.ts wires it.

class SyncedClient extends DurableMatrixClient {
  feed(raw: unknown): Promise<unknown> {
    return this.processSync(raw) as Promise<unknown>;
  }
}

const message = (id: string, content: Record<string, unknown>): Record<string, unknown> => ({
  type: "m.room.message", event_id: id, sender: "@alice:x", origin_server_ts: Date.now(), content,
});

/** Content whose relation cannot even be read: parsing the event throws. */
function poisoned(): Record<string, unknown> {
  const content: Record<string, unknown> = { msgtype: "m.text", body: "boom" };
  Object.defineProperty(content, "m.relates_to", { enumerable: true, get: () => { throw new Error("unreadable relation"); } });
  return content;
}

const batch = (): unknown => ({
  rooms: { join: { "!r:x": { timeline: { events: [
    message("$1", { msgtype: "m.text", body: "first" }),
    message("$2", poisoned()),
    message("$3", { msgtype: "m.text", body: "third" }),
  ] } } } },
});

function setup(): { client: SyncedClient; intake: MessageIntake; handled: string[]; logText: () => string; log: ReturnType<typeof createLogger> } {
  LogService.setLogger({ info() {}, warn() {}, error() {}, debug() {}, trace() {} });
  const chunks: string[] = [];
  const stream = new PassThrough();
  stream.on("data", (c: Buffer) => chunks.push(c.toString("utf8")));
  const log = createLogger("debug", [], stream);
  const handled: string[] = [];
  const intake = new MessageIntake({ inbox: new Inbox(openDatabase(":memory:")), handler: async (m: IncomingMessage) => void handled.push(m.body), log, notBefore: 0 });
  const client = new SyncedClient("http://127.0.0.1:9", "token", new MemoryStorageProvider());
  return { client, intake, handled, log, logText: () => chunks.join("") };
}

test("unguarded, a throw in the handler ends the sync batch: the third event is lost", async () => {
  const { client, intake, handled } = setup();
  client.on("room.message", (roomId: string, event: Record<string, unknown>) => intake.accept(roomId, event));
  await assert.rejects(client.feed(batch()), /unreadable relation/);
  await intake.drain();
  assert.deepEqual(handled, ["first"]);
});

test("guarded, the throw is logged with the event's ids and the batch goes on", async () => {
  const { client, intake, handled, log, logText } = setup();
  client.on("room.message", guardSyncHandler(log, "room.message", (roomId, event) => intake.accept(roomId, event)));
  client.on("room.event", guardSyncHandler(log, "room.event", () => Promise.reject(new Error("async failure"))));
  await client.feed(batch());
  await intake.drain();
  assert.deepEqual(handled, ["first", "third"]);
  const lines = logText().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const sync = lines.filter((l) => l.msg === "could not take in a Matrix event; skipped it, the sync goes on");
  const bad = sync.find((l) => l.handler === "room.message");
  assert.equal(bad?.level, 50);
  assert.equal(bad?.eventId, "$2");
  assert.equal(bad?.roomId, "!r:x");
  assert.match(String((bad?.err as { message?: string }).message), /unreadable relation/);
  assert.equal(sync.filter((l) => l.handler === "room.event").length, 3, "a rejected promise is caught and logged too");
});
