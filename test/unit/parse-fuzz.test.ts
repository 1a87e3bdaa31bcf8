import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCommand, stripPrefix } from "../../src/commands/parse.ts";
import { parseMessage, stripReplyFallback } from "../../src/matrix/inbound.ts";
import { AccessPolicy } from "../../src/access/policy.ts";
import { seededRandom } from "../harness/seeded-random.ts";

// Random and hostile input for the code every Matrix event passes through before anything
// checks it: nothing may throw, every answer must have the promised shape, and no input may
// take long (a regex that backtracks on a 60 KB message would stall the room's queue).
// Seeded, so a failure can be replayed: FUZZ_SEED=<n> node --test test/unit/parse-fuzz.test.ts

const { seed, rand, int, pick } = seededRandom(20_251_127);

const commandWords = ["new", "sessions", "attach", "abort", "status", "forget", "allow", "deny", "reject", "diff", "file", "model", "agent", "project"];
const atoms = [
  ...commandWords, "help", "prompt", "?", "-h", "--help", "!oc", "!OC", "!letta", "ses_", "ses_abc123", "../..", "/etc/passwd", "~", "*", "fake/fake-model", "a/b/c",
  " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\u2028", "\u2029",
  "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u2060",
  "\u0000", "\\0", "\\x00", "%00", "\\u0000", "\u0007", "\u001b[31m", "\ud800", "\udfff", "\ud83d", "\ufffd", "\uffff",
  "🎉", "👨‍👩‍👧‍👦", "🏳️‍🌈", "é", "ﬁ", "İ", "ß", "עברית", "العربية", "中文", "Z̴̡̛a̸l̵g̷o̶", "`", "```", "**", "_", "<b>", "</p>", "&amp;", "[x](javascript:alert(1))",
  "> ", "> <@a:x> quoted", "@room", "@mallory:localhost", "$event:id", "!room:id",
];
const junk = (): string => {
  switch (int(6)) {
    case 0: return pick(atoms);
    case 1: return String.fromCharCode(int(0x10000));
    case 2: return String.fromCodePoint(0x10000 + int(0xfffff));
    case 3: return "x".repeat(int(3) === 0 ? 1000 : int(30));
    case 4: return " ".repeat(int(50));
    default: return rand().toString(36).slice(2, 2 + int(10));
  }
};
const text = (maxParts = 12): string => Array.from({ length: int(maxParts) + 1 }, junk).join(pick(["", " ", "", "\u200b", "\n"]));

const kinds = new Set(["help", "prompt", "command", "unknown"]);

test(`stripPrefix and parseCommand take ${4000} random messages without throwing, in the promised shape (seed ${seed})`, () => {
  for (let i = 0; i < 4000; i++) {
    const body = pick(["", "!oc ", "!oc", " !oc ", "\u200f!oc ", "!OC\u200b", "!letta ", "!ocx"]) + text();
    const rest = stripPrefix(body, "!oc");
    if (rest === undefined) {
      // Not addressed to the bot: then it does not read "!oc" followed by a space (or nothing).
      assert.doesNotMatch(body.replace(/^[\s\p{Cf}]+/u, ""), /^!oc(?:[\s\p{Cf}]|$)/iu, `addressed but refused: ${JSON.stringify(body)}`);
      continue;
    }
    assert.equal(typeof rest, "string");
    assert.equal(rest, rest.trim(), "no whitespace around the rest");
    const cmd = parseCommand(rest, commandWords);
    assert.ok(kinds.has(cmd.kind), `kind ${cmd.kind}`);
    if (cmd.kind === "command") assert.ok(commandWords.includes(cmd.name), cmd.name);
    if (cmd.kind === "prompt") assert.ok(cmd.text.length > 0, "an empty prompt is never sent");
    if (cmd.kind === "unknown") {
      assert.match(cmd.word, /^[a-z][a-z-]*$/);
      assert.ok(cmd.word.length <= 24);
      assert.ok(cmd.suggestion === undefined || ["help", ...commandWords].includes(cmd.suggestion));
    }
  }
});

test("invisible characters around the prefix and the command word do not change what a message means", () => {
  for (const mark of ["\u200b", "\u200e", "\u200f", "\ufeff", "\u2060", "\u2067"]) {
    assert.equal(stripPrefix(`${mark}!oc help`, "!oc"), "help", `leading U+${mark.codePointAt(0)?.toString(16)}`);
    assert.equal(stripPrefix(`!oc${mark}status`, "!oc"), "status");
    assert.deepEqual(parseCommand(`${mark}status${mark}`, commandWords), { kind: "command", name: "status", args: "" });
    assert.deepEqual(parseCommand(`model${mark} fake/fake-model`, commandWords), { kind: "command", name: "model", args: "fake/fake-model" });
  }
  assert.equal(stripPrefix("!oc\u200bfoo", "!oc"), "foo", "a zero-width space separates like a space");
  assert.equal(stripPrefix("!ocfoo", "!oc"), undefined);
  assert.deepEqual(parseCommand("🎉"), { kind: "prompt", text: "🎉" });
});

test("hostile long inputs are parsed in linear time", () => {
  const cases = [
    `!oc ${" ".repeat(60_000)}x`,
    `!oc ${"\u200b".repeat(60_000)}x`,
    `!oc x${" \u200b".repeat(30_000)}`,
    `!oc ${"a".repeat(60_000)}`,
    `!oc model ${"/".repeat(60_000)}`,
    `${" ".repeat(60_000)}!oc help`,
    `!oc ${"a ".repeat(30_000)}`,
  ];
  for (const body of cases) {
    const t0 = performance.now();
    const rest = stripPrefix(body, "!oc");
    if (rest !== undefined) parseCommand(rest, commandWords);
    const ms = performance.now() - t0;
    // Linear: a few ms. Quadratic on 60 KB: seconds. The margin is for a busy machine.
    assert.ok(ms < 1500, `${ms.toFixed(0)} ms for ${JSON.stringify(body.slice(0, 30))}…`);
  }
  const quoted = `${"> <@a:x> line\n".repeat(20_000)}\nanswer`;
  const t0 = performance.now();
  assert.equal(stripReplyFallback(quoted), "answer");
  assert.ok(performance.now() - t0 < 1500);
});

// Values of every JSON type, nested a little, for the fields of a raw event.
const anyValue = (depth = 0): unknown => {
  switch (int(depth > 2 ? 7 : 9)) {
    case 0: return null;
    case 1: return undefined;
    case 2: return int(2) === 0;
    case 3: return pick([0, -1, 1.5, Number.MAX_SAFE_INTEGER, Number.NaN, 1e300]);
    case 4: return text(4);
    case 5: return pick(["m.text", "m.notice", "m.emote", "m.image", "m.file", "m.reaction", "m.room.message", "m.replace", "m.thread", "m.annotation"]);
    case 6: return "$" + text(2);
    case 7: return Array.from({ length: int(4) }, () => anyValue(depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const keys = ["body", "msgtype", "m.relates_to", "rel_type", "event_id", "key", "m.in_reply_to", "m.new_content", "format", "formatted_body", "url", "__proto__", "constructor"];
      for (let i = int(5); i > 0; i--) o[pick(keys)] = anyValue(depth + 1);
      return o;
    }
  }
};

test(`parseMessage takes ${3000} random raw events without throwing (seed ${seed})`, () => {
  for (let i = 0; i < 3000; i++) {
    const raw: Record<string, unknown> = {
      event_id: int(8) === 0 ? anyValue() : `$${i}`,
      sender: int(8) === 0 ? anyValue() : pick(["@alice:localhost", "@bot:localhost", text(2)]),
      origin_server_ts: int(4) === 0 ? anyValue() : Date.now(),
      type: int(3) === 0 ? anyValue() : pick(["m.room.message", "m.reaction"]),
      content: int(6) === 0 ? anyValue() : {
        msgtype: int(4) === 0 ? anyValue() : "m.text",
        body: int(4) === 0 ? anyValue() : text(),
        "m.relates_to": int(2) === 0 ? anyValue() : { rel_type: pick(["m.thread", "m.replace", "m.annotation", 5, null]), event_id: anyValue(), key: anyValue(), "m.in_reply_to": anyValue() },
      },
    };
    const msg = parseMessage("!room:localhost", raw);
    if (msg === undefined) continue;
    assert.equal(typeof msg.eventId, "string");
    assert.equal(typeof msg.sender, "string");
    assert.equal(typeof msg.body, "string");
    assert.equal(typeof msg.msgtype, "string");
    assert.equal(typeof msg.isEdit, "boolean");
    assert.equal(typeof msg.timestamp, "number");
    assert.ok(msg.threadRoot === undefined || typeof msg.threadRoot === "string");
    if (raw.type === "m.reaction") assert.equal(typeof msg.reactsTo, "string", "a reaction says what it reacts to");
  }
});

test("allow-list globs never throw and never match what they should not", () => {
  const policy = new AccessPolicy(["@alice-*:localhost", "@bob:example.org"], 1000);
  for (let i = 0; i < 3000; i++) {
    const id = pick(["@", "@alice-", "@bob", "", "@mallory"]) + text(3) + pick([":localhost", ":example.org", "", ":localhost.evil"]);
    const allowed = policy.isAllowed(id);
    if (allowed) assert.ok(/^@alice-[\s\S]*:localhost$/.test(id) || id === "@bob:example.org", `allowed ${JSON.stringify(id)}`);
  }
  assert.ok(policy.isAllowed("@alice-x:localhost"));
  assert.ok(!policy.isAllowed("@alice-x:localhost.evil"));
  assert.ok(!policy.isAllowed("@mallory:localhost"));
});
