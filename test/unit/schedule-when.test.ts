import { test } from "node:test";
import assert from "node:assert/strict";
import { CliUsageError, parseSendArgs } from "../../src/cli/args.ts";
import { ScheduleError, formatTime, nextCronTime, parseWhen } from "../../src/schedule/when.ts";

// When a prompt of the `send` CLI is due, and what its command line may say.

const now = Date.parse("2030-01-31T08:59:30Z");

test("--at: nothing is now, an ISO time is once, a cron expression repeats", () => {
  assert.deepEqual(parseWhen(undefined, now, "UTC"), { dueAt: now, cron: null });
  assert.deepEqual(parseWhen("2030-01-31T09:00:00Z", now, "UTC"), { dueAt: Date.parse("2030-01-31T09:00:00Z"), cron: null });
  assert.equal(parseWhen("2030-01-31T10:00:00+01:00", now, "UTC").dueAt, Date.parse("2030-01-31T09:00:00Z"));
  assert.equal(parseWhen("2030-01-31T09:00", now, "UTC").dueAt, Date.parse("2030-01-31T09:00:00Z"), "no zone: UTC");
  assert.deepEqual(parseWhen("0 9 * * 1-5", now, "UTC"), { dueAt: Date.parse("2030-01-31T09:00:00Z"), cron: "0 9 * * 1-5" });
  assert.equal(parseWhen("*/10 * * * * *", now, "UTC").dueAt, Date.parse("2030-01-31T08:59:40Z"), "six fields: seconds first");
});

test("cron is read in the configured time zone", () => {
  assert.equal(nextCronTime("0 9 * * *", now, "Europe/Berlin"), Date.parse("2030-02-01T08:00:00Z"));
  assert.equal(formatTime(now), "2030-01-31 08:59:30 UTC");
});

test("what is neither a time nor a cron expression is refused plainly", () => {
  for (const bad of ["tomorrow", "31.01.2030", "2030-13-45T99:00:00Z", "* * *", "0 9 * * mon-fry", "1 2 3 4 5 6 7"]) {
    assert.throws(() => parseWhen(bad, now, "UTC"), ScheduleError, bad);
  }
});

test("the send command line", () => {
  const args = parseSendArgs(["--room", "#ci:example.org", "--prompt", "run the tests", "--at", "0 3 * * *", "--notify-only"]);
  assert.deepEqual(args, { room: "#ci:example.org", prompt: "run the tests", thread: undefined, session: undefined, notifyOnly: true, at: "0 3 * * *", config: undefined });
  assert.equal(parseSendArgs(["--help"]), undefined);
  for (const room of ["!abc:example.org", "!sTGI3EE_oxaX6L9qA1T9V0zWIa4AZkMYtNtv_5fweBM"]) assert.equal(parseSendArgs(["--room", room, "--prompt", "x"])?.room, room);
  const refused: Array<[string[], RegExp]> = [
    [["--prompt", "x"], /--room is required/],
    [["--room", "!r:x"], /--prompt is required/],
    [["--room", "general", "--prompt", "x"], /neither a room id/],
    [["--room", "#general", "--prompt", "x"], /neither a room id/],
    [["--room", "!r:x", "--prompt", "x", "--thread", "$t", "--session", "ses_1"], /not both/],
    [["--room", "!r:x", "--prompt", "x", "--session", "abc"], /not a session id/],
    [["--room", "!r:x", "--prompt", "x", "--colour", "red"], /Unknown option/],
  ];
  for (const [argv, why] of refused) assert.throws(() => parseSendArgs(argv), (e: Error) => e instanceof CliUsageError && why.test(e.message), argv.join(" "));
});
