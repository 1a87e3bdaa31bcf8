import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { migrate, openDatabase } from "../../src/store/db.ts";
import { ThreadStore } from "../../src/store/threads.ts";

const migrations = join(import.meta.dirname, "..", "..", "migrations");

test("006 keeps every thread and lets a backend name its threads freely", () => {
  const dir = mkdtempSync(join(tmpdir(), "migrations-"));
  // A database as the previous release left it: migrations up to 005.
  const before = join(dir, "before");
  cpSync(migrations, before, { recursive: true });
  for (const f of readdirSync(before)) if (Number(f.slice(0, 3)) >= 6) rmSync(join(before, f));
  const path = join(dir, "bot.db");
  const old = new Database(path);
  migrate(old, before);
  old.prepare(
    `INSERT INTO threads (room_id, root_event_id, backend, session_id, title, started_by, created_at, last_activity_at, directory, model, agent)
     VALUES ('!r:x', '$root', 'opencode', 'ses_1', 'a title', '@alice:x', 1, 2, '/ws', 'fake/fake-model', 'build')`,
  ).run();
  assert.throws(() => old.prepare("INSERT INTO threads (room_id, root_event_id, backend, session_id, started_by, created_at, last_activity_at) VALUES ('!r:x', '$2', 'gemini', 's', '@a:x', 1, 1)").run(), /CHECK constraint failed/);
  old.close();

  const db = openDatabase(path);
  const threads = new ThreadStore(db);
  assert.deepEqual(
    db.prepare("SELECT room_id, root_event_id, backend, session_id, title, started_by, created_at, last_activity_at, directory, model, agent FROM threads").all(),
    [{ room_id: "!r:x", root_event_id: "$root", backend: "opencode", session_id: "ses_1", title: "a title", started_by: "@alice:x", created_at: 1, last_activity_at: 2, directory: "/ws", model: "fake/fake-model", agent: "build" }],
  );
  threads.insert({ roomId: "!r:x", rootEventId: "$2", backend: "gemini", sessionId: "s-2", title: "t", startedBy: "@alice:x" });
  assert.equal(threads.bySession("gemini", "s-2")[0]?.rootEventId, "$2");
  assert.throws(() => db.prepare("INSERT INTO threads (room_id, root_event_id, backend, session_id, started_by, created_at, last_activity_at) VALUES ('!r:x', '$3', '', 's', '@a:x', 1, 1)").run(), /CHECK constraint failed/);
  db.close();
  rmSync(dir, { recursive: true, force: true });
});
