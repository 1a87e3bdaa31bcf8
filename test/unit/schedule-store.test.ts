import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PromptQueue } from "../../src/opencode/prompt-queue.ts";
import { ScheduleStore, type NewSchedule } from "../../src/schedule/store.ts";
import { openDatabase } from "../../src/store/db.ts";

// The tables behind scheduled and queued prompts, on a real SQLite file as the bot and the CLI use it.

const dir = mkdtempSync(join(tmpdir(), "sched-"));
let n = 0;
const freshDb = (): string => join(dir, `bot-${++n}.db`);
const row = (over: Partial<NewSchedule> = {}): NewSchedule => ({
  roomId: "!r:x",
  threadRoot: null,
  sessionId: null,
  text: "run the nightly checks",
  notifyOnly: false,
  dueAt: 1000,
  cron: null,
  createdBy: "cli",
  status: "pending",
  ...over,
});

test("a due row is claimed once; held and future rows are not claimed", () => {
  const store = new ScheduleStore(openDatabase(freshDb()));
  const due = store.insert(row());
  store.insert(row({ dueAt: 5000 }));
  const held = store.insert(row({ status: "held" }));
  assert.deepEqual(store.claimDue(2000).map((r) => r.id), [due]);
  assert.deepEqual(store.claimDue(2000), [], "a claimed row is not claimed again");
  store.release(held, "$marker");
  const [released] = store.claimDue(2000);
  assert.equal(released?.id, held);
  assert.equal(released?.markerEventId, "$marker");
});

test("two processes polling the same database file never claim the same row", async (t) => {
  const path = freshDb();
  const store = new ScheduleStore(openDatabase(path));
  const ids = Array.from({ length: 300 }, (_, i) => store.insert(row({ dueAt: i })));
  // A second process claims one row at a time until none is left, while this one does the same.
  const script = `
    import { ScheduleStore } from ${JSON.stringify(new URL("../../src/schedule/store.ts", import.meta.url).href)};
    import { openDatabase } from ${JSON.stringify(new URL("../../src/store/db.ts", import.meta.url).href)};
    const s = new ScheduleStore(openDatabase(${JSON.stringify(path)}));
    process.stdout.write("ready\\n");
    const got = [];
    for (let empty = 0; empty < 50; ) {
      const ids = s.claimDue(Date.now(), 1).map((r) => r.id);
      got.push(...ids);
      empty = ids.length ? 0 : empty + 1;
      await new Promise((r) => setTimeout(r, 0));
    }
    process.stdout.write(JSON.stringify(got) + "\\n");`;
  const child = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const exited = new Promise((r) => child.once("exit", r));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.startsWith("ready\n")) resolve();
    });
    void exited.then(() => reject(new Error(`the other process exited early: ${out}`)));
  });
  const mine: number[] = [];
  for (let empty = 0; empty < 50; ) {
    const got = store.claimDue(Date.now(), 1).map((r) => r.id);
    mine.push(...got);
    empty = got.length ? 0 : empty + 1;
    await new Promise((r) => setTimeout(r, 0));
  }
  await exited;
  const theirs = JSON.parse(out.split("\n")[1] ?? "[]") as number[];
  assert.ok(mine.length > 0 && theirs.length > 0, `both processes claimed rows (here ${mine.length}, there ${theirs.length})`);
  assert.deepEqual([...mine, ...theirs].sort((a, b) => a - b), ids, "every row claimed exactly once");
  t.diagnostic(`claimed here ${mine.length}, in the other process ${theirs.length}`);
});

test("after firing, a one-shot row is done and a recurring one pending at its next time", () => {
  const store = new ScheduleStore(openDatabase(freshDb()));
  const once = store.insert(row());
  const cron = store.insert(row({ cron: "*/5 * * * *" }));
  store.claimDue(2000);
  store.fired(once, null, 2100);
  store.fired(cron, 300_000, 2100);
  assert.equal(store.get(once)?.status, "done");
  assert.equal(store.get(once)?.firedCount, 1);
  const next = store.get(cron);
  assert.deepEqual([next?.status, next?.dueAt, next?.firedCount, next?.markerEventId], ["pending", 300_000, 1, null]);
  assert.deepEqual(store.active("!r:x").map((r) => r.id), [cron]);
});

test("a row a crashed process left firing is pending again at start-up, marker kept", () => {
  const path = freshDb();
  const a = new ScheduleStore(openDatabase(path));
  const id = a.insert(row());
  a.claimDue(2000);
  a.setMarker(id, "$posted-before-the-crash");
  const b = new ScheduleStore(openDatabase(path));
  assert.equal(b.recoverFiring(), 1);
  const [again] = b.claimDue(2000);
  assert.equal(again?.markerEventId, "$posted-before-the-crash", "the retry reuses the message already posted");
});

test("failures retry later, then give up; cancel works only in the row's room and before it fired", () => {
  const store = new ScheduleStore(openDatabase(freshDb()));
  const id = store.insert(row());
  store.claimDue(2000);
  store.failed(id, "OpenCode is down", 9000);
  assert.deepEqual([store.get(id)?.status, store.get(id)?.attempts, store.get(id)?.dueAt], ["pending", 1, 9000]);
  store.claimDue(9000);
  store.failed(id, "still down", null);
  assert.equal(store.get(id)?.status, "failed");
  const later = store.insert(row({ dueAt: 99_999 }));
  assert.equal(store.cancel(later, "!other:x"), false);
  assert.equal(store.cancel(later, "!r:x"), true);
  assert.equal(store.cancel(later, "!r:x"), false);
  assert.deepEqual(store.claimDue(1e12), []);
});

test("queued prompts keep their order, files and options across a reopen", () => {
  const path = freshDb();
  const q = new PromptQueue(openDatabase(path));
  const t = { sessionId: "ses_1", roomId: "!r:x", rootEventId: "$root" };
  const opts = { directory: "/w", model: { providerID: "p", modelID: "m" }, agent: "build" };
  const a = q.add(t, { roomId: "!r:x", eventId: "$a", sender: "@a:x", text: "[A] first", files: [{ mime: "text/plain", filename: "n.txt", data: Buffer.from("hi") }] }, opts);
  const b = q.add(t, { roomId: "!r:x", eventId: "$b", sender: "@b:x", text: "review" }, { directory: "/w" }, { name: "review", args: "main" });
  assert.deepEqual([q.position("ses_1", a), q.position("ses_1", b)], [1, 2]);
  const reopened = new PromptQueue(openDatabase(path));
  assert.deepEqual(reopened.sessions(), ["ses_1"]);
  const first = reopened.next("ses_1");
  assert.equal(first?.req.text, "[A] first");
  assert.equal(first?.req.files?.[0]?.data.toString(), "hi");
  assert.deepEqual(first?.opts, opts);
  reopened.remove(a);
  assert.deepEqual(reopened.next("ses_1")?.command, { name: "review", args: "main" });
  assert.equal(reopened.position("ses_1", a), 0);
  assert.equal(reopened.clear("ses_1"), 1);
  assert.deepEqual(reopened.sessions(), []);
});
