import { test } from "node:test";
import assert from "node:assert/strict";
import { AccessPolicy } from "../../src/access/policy.ts";
import { patternProblem, userMatcher } from "../../src/access/user-pattern.ts";
import { ConfigError, loadConfig } from "../../src/config/load.ts";

const cases: Array<[pattern: string, matches: string[], misses: string[]]> = [
  ["@alice:example.org", ["@alice:example.org"], ["@alice:example.org.evil.com", "@alice:evil.org", "@alice2:example.org", "@Alice:example.org", "@alice:example.org:8448", "alice:example.org"]],
  ["@alice*:example.org", ["@alice:example.org", "@alice-bot:example.org", "@alice.smith:example.org"], ["@alice:evil.org", "@alice:example.org.evil.com", "@bob:example.org", "@malice:example.org"]],
  ["*:example.org", ["@bob:example.org", "@alice:example.org", "@x.y_z=1/2+3:example.org"], ["@eve:example.org.evil.com", "@eve:evilexample.org", "@eve:chat.example.org", "@eve:example.org:8448", "@eve:example.orgx"]],
  ["@*:example.org", ["@bob:example.org"], ["@bob:evil.org", "@bob:example.org.evil.com"]],
  ["@*:*.example.org", ["@bob:chat.example.org", "@bob:a.b.example.org"], ["@bob:example.org", "@bob:evil.org", "@bob:chat.example.org.evil.com", "@bob:chatexample.org", "@bob:chat.example.org:8448", "@bob:x:1.example.org"]],
  ["@*:example.org:8448", ["@bob:example.org:8448"], ["@bob:example.org", "@bob:example.org:8449", "@bob:example.org:84480"]],
  ["@*:*.example.org:8448", ["@bob:chat.example.org:8448"], ["@bob:chat.example.org", "@bob:example.org:8448"]],
  ["@alice-*:localhost", ["@alice-perm-x1:localhost"], ["@alice:localhost", "@bob-alice-1:localhost", "@alice-1:localhost.evil"]],
  ["@*bot:example.org", ["@bot:example.org", "@helperbot:example.org"], ["@bots:example.org"]],
  ["@a.b+c:example.org", ["@a.b+c:example.org"], ["@aXb+c:example.org", "@a.bbc:example.org"]],
  ["@*:[::1]:8448", ["@bob:[::1]:8448"], ["@bob:[::2]:8448", "@bob:[::1]"]],
  ["@*:*", ["@bob:example.org", "@eve:evil.org:8448", "@x:[::1]"], ["bob:example.org", "@bob", "", "@:example.org"]],
];

for (const [pattern, yes, no] of cases) {
  test(`${pattern} admits ${yes.join(", ")} and nobody else listed`, () => {
    const m = userMatcher(pattern);
    for (const id of yes) assert.equal(m(id), true, `${pattern} should match ${id}`);
    for (const id of no) assert.equal(m(id), false, `${pattern} must not match ${id}`);
  });
}

test("patterns that a glob library would read differently, or that admit too much, are refused with a reason", () => {
  const refused: Array<[string, RegExp]> = [
    ["@alice*", /has no server part/],
    ["@alice", /has no server part/],
    ["*", /has no server part/],
    ["", /has no server part/],
    ["alice:example.org", /must start with @/],
    ["@alice:*", /any server, including one anybody can set up/],
    ["@*:example.*", /\* may only stand for the whole server/],
    ["@*:*example.org", /\* may only stand for the whole server/],
    ["@*:chat.*.example.org", /\* may only stand for the whole server/],
    ["@{alice,bob}:example.org", /only \* is a wildcard/],
    ["@alice?:example.org", /only \* is a wildcard/],
    ["@[ab]lice:example.org", /only \* is a wildcard/],
    ["@alice:example.org/x", /is not a server name/],
    ["@alice:example.org:99999", /is not a server name/],
    ["@alice:-example.org", /is not a server name/],
    ["@alice: example.org", /contains a space/],
  ];
  for (const [pattern, why] of refused) {
    assert.match(patternProblem(pattern) ?? "(accepted)", why, pattern);
    assert.throws(() => userMatcher(pattern), /invalid user pattern/);
  }
  for (const [pattern] of cases) assert.equal(patternProblem(pattern), undefined, pattern);
});

test("config validation names the key, says why and gives an example", () => {
  const base = { MATRIX_HOMESERVER_URL: "http://127.0.0.1:8008", MATRIX_ACCESS_TOKEN: "tok", BOT_CONFIG: "/dev/null" };
  assert.throws(() => loadConfig({ env: { ...base, BOT_ALLOWED_USERS: "@bob:example.org,@alice*" } }), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /access\.allowedUsers\.1 \(from BOT_ALLOWED_USERS\): `@alice\*` has no server part .*`@alice-\*:example\.org`/);
    return true;
  });
  assert.throws(() => loadConfig({ env: { ...base, BOT_ALLOWED_USERS: "@a:x", BOT_ADMINS: "@root:*" } }), /access\.admins\.0 \(from BOT_ADMINS\): `@root:\*` would admit/);
  const c = loadConfig({ env: { ...base, BOT_ALLOWED_USERS: "@a:x", BOT_ADMINS: "@op:example.org, @ops-*:example.org" } });
  assert.deepEqual(c.access.admins, ["@op:example.org", "@ops-*:example.org"]);
  assert.deepEqual(loadConfig({ env: { ...base, BOT_ALLOWED_USERS: "@a:x" } }).access.admins, [], "no admins unless configured");
});

test("admins are allowed users too; allowed users are not admins", () => {
  const policy = new AccessPolicy(["@*:example.org"], 0, ["@op:ops.example.net"]);
  assert.equal(policy.isAllowed("@op:ops.example.net"), true);
  assert.equal(policy.isAdmin("@op:ops.example.net"), true);
  assert.equal(policy.isAllowed("@bob:example.org"), true);
  assert.equal(policy.isAdmin("@bob:example.org"), false);
  assert.equal(policy.isAllowed("@op:ops.example.net.evil.com"), false);
  assert.equal(policy.hasAdmins, true);
  assert.equal(new AccessPolicy(["@*:example.org"], 0).hasAdmins, false);
});
