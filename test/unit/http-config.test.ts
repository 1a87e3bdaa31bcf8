import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/load.ts";

const base = { MATRIX_HOMESERVER_URL: "http://127.0.0.1:8008", MATRIX_ACCESS_TOKEN: "tok", BOT_ALLOWED_USERS: "@a:x", BOT_CONFIG: "/dev/null" };

test("notify is off by default and configured by BOT_NOTIFY_TOKEN / BOT_NOTIFY_ROOM", () => {
  const off = loadConfig({ file: "/dev/null", env: base });
  assert.deepEqual(off.notify, { perTokenPerMinute: 30, perSessionPerMinute: 10 });
  for (const room of ["!abc123:example.org", "!Qz9hash_of_create-event", "!x:localhost:8448"]) {
    const on = loadConfig({ file: "/dev/null", env: { ...base, BOT_NOTIFY_TOKEN: "0123456789abcdef", BOT_NOTIFY_ROOM: room } });
    assert.deepEqual(on.notify, { token: "0123456789abcdef", defaultRoom: room, perTokenPerMinute: 30, perSessionPerMinute: 10 });
  }
});

test("the notify rate limits are set by BOT_NOTIFY_PER_TOKEN_PER_MINUTE / BOT_NOTIFY_PER_SESSION_PER_MINUTE", () => {
  const c = loadConfig({ file: "/dev/null", env: { ...base, BOT_NOTIFY_PER_TOKEN_PER_MINUTE: "120", BOT_NOTIFY_PER_SESSION_PER_MINUTE: "3" } });
  assert.deepEqual([c.notify.perTokenPerMinute, c.notify.perSessionPerMinute], [120, 3]);
  assert.throws(() => loadConfig({ file: "/dev/null", env: { ...base, BOT_NOTIFY_PER_SESSION_PER_MINUTE: "0" } }), /notify\.perSessionPerMinute \(from BOT_NOTIFY_PER_SESSION_PER_MINUTE\)/);
});

test("a short notify token or a room alias is refused naming the key", () => {
  assert.throws(() => loadConfig({ file: "/dev/null", env: { ...base, BOT_NOTIFY_TOKEN: "short" } }), /notify\.token \(from BOT_NOTIFY_TOKEN\): use at least 16 characters/);
  assert.throws(() => loadConfig({ file: "/dev/null", env: { ...base, BOT_NOTIFY_ROOM: "#room:example.org" } }), /notify\.defaultRoom \(from BOT_NOTIFY_ROOM\): must be a room id/);
});
