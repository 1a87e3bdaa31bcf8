import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCommand, stripPrefix } from "../../src/commands/parse.ts";
import { stripReplyFallback } from "../../src/matrix/inbound.ts";
import { AccessPolicy } from "../../src/access/policy.ts";

test("only messages that start with the prefix as a word are addressed to the bot", () => {
  assert.equal(stripPrefix("!oc do it", "!oc"), "do it");
  assert.equal(stripPrefix("   !OC   do it  ", "!oc"), "do it");
  assert.equal(stripPrefix("!oc", "!oc"), "");
  assert.equal(stripPrefix("!ocdo it", "!oc"), undefined);
  assert.equal(stripPrefix("hey !oc do it", "!oc"), undefined);
});

test("commands, prompts and mistyped commands are told apart", () => {
  assert.deepEqual(parseCommand(""), { kind: "help" });
  assert.deepEqual(parseCommand("help"), { kind: "help" });
  assert.deepEqual(parseCommand("Create hello.py that prints hello"), { kind: "prompt", text: "Create hello.py that prints hello" });
  assert.deepEqual(parseCommand("prompt hi"), { kind: "prompt", text: "hi" });
  assert.deepEqual(parseCommand("hlep"), { kind: "unknown", word: "hlep", suggestion: "help" });
  assert.deepEqual(parseCommand("frobnicate"), { kind: "unknown", word: "frobnicate", suggestion: undefined });
  assert.equal(parseCommand("fix: the bug").kind, "prompt");
  assert.equal(parseCommand("héllo wörld 🎉").kind, "prompt");
});

test("reply fallbacks are removed from the body", () => {
  assert.equal(stripReplyFallback("> <@a:x> earlier\n> more\n\nthe answer"), "the answer");
  assert.equal(stripReplyFallback("plain"), "plain");
});

test("allowed users match exact ids and globs, nothing else", () => {
  const p = new AccessPolicy(["@alice:example.org", "@*:team.org"], 1000);
  assert.ok(p.isAllowed("@alice:example.org"));
  assert.ok(p.isAllowed("@bob:team.org"));
  assert.ok(p.isAllowed("@bob.smith:team.org"));
  assert.ok(!p.isAllowed("@mallory:example.org"));
  assert.ok(!p.isAllowed("@bob:team.org.evil.com"));
  assert.ok(!p.isAllowed("@alice:example.org "));
  assert.ok(p.shouldTellStranger("!r", "@m:x", 0));
  assert.ok(!p.shouldTellStranger("!r", "@m:x", 500));
  assert.ok(p.shouldTellStranger("!r", "@m:x", 1500));
});
