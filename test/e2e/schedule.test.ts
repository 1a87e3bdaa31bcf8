import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { repoDir } from "../harness/stack.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Prompts without a person typing: the `send` CLI (as CI jobs and cron use it) posts as the bot
// and the running bot answers; scheduled prompts fire once, also across a restart.

let env: TestEnv;
before(async () => {
  env = await TestEnv.create({ name: "sched", botEnv: { BOT_COMPLETION_NOTICE_AFTER_MS: "600000" } });
});
after(async () => {
  await env?.close();
});

/** Runs `npm run send -- …` the way an operator would: same config (environment), same database. */
function send(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", join(repoDir, "src/cli/send.ts"), ...args], {
    cwd: repoDir,
    env: {
      ...process.env,
      BOT_CONFIG: "/dev/null",
      MATRIX_HOMESERVER_URL: env.homeserver.baseUrl,
      MATRIX_ACCESS_TOKEN: env.accounts.bot.accessToken,
      BOT_ALLOWED_USERS: env.accounts.alice.userId,
      BOT_DATABASE_PATH: env.dbPath,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() })));
}

const body = (e: MatrixEvent): string => String(e.content.body);
const isRootOf = (id: number) => (e: MatrixEvent): boolean => body(e).startsWith(`📨 **Prompt #${id}** from cli`) && e.content["m.relates_to"] === undefined;
const rootsOf = (id: number): MatrixEvent[] => env.users.alice.seenEvents(env.roomId).filter((e) => e.sender === env.botUserId && isRootOf(id)(e));
const row = (id: number): { status: string; fired_count: number } | undefined =>
  env.query<{ status: string; fired_count: number }>("SELECT status, fired_count FROM scheduled_prompts WHERE id = ?", id)[0];

describe("the send CLI", () => {
  let firstRoot = "";

  test("a prompt from the CLI is posted as the bot and answered in its own new thread", async (t) => {
    const sentAt = performance.now();
    const out = await send("--room", env.roomId, "--prompt", "nightly report please");
    const cliMs = performance.now() - sentAt;
    assert.equal(out.code, 0, out.stderr);
    const m = /^#(\d+) sent to (\S+) as (\$\S+);/.exec(out.stdout);
    assert.ok(m, out.stdout);
    assert.equal(m[2], env.roomId);
    firstRoot = m[3] as string;
    const root = await env.waitForBot("the prompt's message", (e) => e.event_id === firstRoot);
    assert.equal(body(root), `📨 **Prompt #${m[1]}** from cli:\n\nnightly report please`);
    const reply = await waitForFinalReply(env, firstRoot, firstRoot, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: nightly report please");
    t.diagnostic(`CLI run ${cliMs.toFixed(0)} ms; CLI start → first reply ${reply.firstSeenAfterMs.toFixed(0)} ms, → final answer ${reply.finalSeenAfterMs.toFixed(0)} ms`);
    assert.deepEqual(row(Number(m[1])), { status: "done", fired_count: 1 });
    const texts = (await env.modelRequests()).filter((r) => r.kind === "chat").map((r) => r.lastUserText);
    assert.equal(texts.filter((x) => x === "[cli] nightly report please").length, 1, "reached OpenCode once, marked as from the CLI");
  });

  test("--thread, --session and a room alias reach an existing thread; --notify-only only posts a notice", async () => {
    const sentAt = performance.now();
    const inThread = await send("--room", env.roomId, "--thread", firstRoot, "--prompt", "and a follow-up from CI");
    assert.equal(inThread.code, 0, inThread.stderr);
    const marker = /as (\$\S+);/.exec(inThread.stdout)?.[1] ?? "";
    assert.equal(splitFooter((await waitForFinalReply(env, firstRoot, marker, sentAt)).body).text, "Echo: and a follow-up from CI");

    const server = env.accounts.alice.userId.split(":").slice(1).join(":");
    const alias = `#sched-${Date.now().toString(36)}:${server}`;
    const res = await fetch(`${env.homeserver.baseUrl}/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${env.accounts.alice.accessToken}`, "content-type": "application/json" },
      body: JSON.stringify({ room_id: env.roomId }),
    });
    assert.equal(res.status, 200);
    const session = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", firstRoot)[0]?.session_id ?? "";
    const bySession = await send("--room", alias, "--session", session, "--prompt", "one more by session id");
    assert.equal(bySession.code, 0, bySession.stderr);
    const marker2 = /as (\$\S+);/.exec(bySession.stdout)?.[1] ?? "";
    assert.equal(splitFooter((await waitForFinalReply(env, firstRoot, marker2, sentAt)).body).text, "Echo: one more by session id");

    const notice = await send("--room", env.roomId, "--notify-only", "--prompt", "deploy finished");
    assert.equal(notice.code, 0, notice.stderr);
    const noticeId = /: (\$\S+)$/.exec(notice.stdout)?.[1] ?? "";
    const seen = await env.waitForBot("the notice", (e) => e.event_id === noticeId);
    assert.equal(seen.content.msgtype, "m.notice");
    assert.equal(body(seen), "🔔 deploy finished");
    await sleep(1500);
    const texts = (await env.modelRequests()).map((r) => r.lastUserText);
    assert.ok(!texts.some((x) => x.includes("deploy finished")), "a notice prompts nothing");
    assert.equal(env.query("SELECT 1 FROM threads WHERE root_event_id = ?", noticeId).length, 0);
  });

  test("wrong arguments are refused with a reason and exit code 2", async () => {
    const noRoom = await send("--prompt", "x");
    assert.deepEqual([noRoom.code, noRoom.stderr.split("\n")[0]], [2, "--room is required"]);
    const badTime = await send("--room", env.roomId, "--prompt", "x", "--at", "next tuesday");
    assert.equal(badTime.code, 2);
    assert.match(badTime.stderr, /^send: `next tuesday` is not a cron expression: it needs 5 fields/);
    const noThread = await send("--room", env.roomId, "--prompt", "x", "--thread", "$nothing-here");
    assert.equal(noThread.code, 1);
    assert.match(noThread.stderr, /^send: there is no OpenCode session thread with root \$nothing-here/);
  });
});

describe("scheduled prompts", () => {
  test("a scheduled prompt fires exactly once across a bot restart", async (t) => {
    const dueAt = Date.now() + 8000;
    const out = await send("--room", env.roomId, "--prompt", "scheduled across a restart", "--at", new Date(dueAt).toISOString());
    assert.equal(out.code, 0, out.stderr);
    const id = Number(/^#(\d+) scheduled for /.exec(out.stdout)?.[1]);
    await env.waitForBot("the scheduling notice", (e) => body(e).startsWith(`🗓️ Scheduled prompt #${id} (`));
    assert.match(await env.ask("!oc schedule"), new RegExp(`^\\*\\*Scheduled in this room\\*\\* \\(1\\):\\n\\n\\*\\*#${id}\\*\\* 📨 prompt · next \\d{4}-\\d\\d-\\d\\d [\\d:]+ UTC · new thread · by cli\\n   scheduled across a restart$`));
    // Down over the due time: the prompt waits in the database for the next process.
    await env.bot.stop("SIGTERM");
    await sleep(Math.max(0, dueAt - Date.now()) + 1500);
    assert.deepEqual(row(id), { status: "pending", fired_count: 0 });
    const restartedAt = performance.now();
    await env.restartBot();
    const root = await env.waitForBot("the scheduled prompt's thread", isRootOf(id), 30_000);
    const reply = await waitForFinalReply(env, root.event_id, root.event_id, restartedAt);
    assert.equal(splitFooter(reply.body).text, "Echo: scheduled across a restart");
    t.diagnostic(`restart → scheduled answer visible: ${reply.finalSeenAfterMs.toFixed(0)} ms`);
    // Another restart must not fire it again.
    await env.restartBot("SIGKILL");
    await sleep(3000);
    assert.equal(rootsOf(id).length, 1, "posted once");
    assert.deepEqual(row(id), { status: "done", fired_count: 1 });
    const texts = (await env.modelRequests()).filter((r) => r.kind === "chat").map((r) => r.lastUserText);
    assert.equal(texts.filter((x) => x.includes("scheduled across a restart")).length, 1, "sent to OpenCode once");
  });

  test("a cron prompt repeats until `!oc schedule rm` ends it; a removed one-shot never fires", async () => {
    const later = await send("--room", env.roomId, "--prompt", "never to be sent", "--at", new Date(Date.now() + 4000).toISOString());
    const laterId = Number(/^#(\d+)/.exec(later.stdout)?.[1]);
    // Bob may use the bot but is no moderator here: he sees the schedule, he does not change it.
    assert.equal(await env.ask(`!oc schedule rm ${laterId}`, { as: "bob" }), "Removing a scheduled prompt needs room moderator rights (power level ≥ 50).");
    assert.deepEqual(env.query("SELECT status FROM scheduled_prompts WHERE id = ?", laterId), [{ status: "pending" }]);
    assert.equal(await env.ask(`!oc schedule rm ${laterId}`), `🗑️ Removed scheduled prompt #${laterId}; it will not fire.`);
    const cron = await send("--room", env.roomId, "--prompt", "tick from cron", "--at", "*/3 * * * * *");
    assert.equal(cron.code, 0, cron.stderr);
    const id = Number(/^#(\d+) scheduled for .* \(cron \*\/3 \* \* \* \* \*, UTC\)/.exec(cron.stdout)?.[1]);
    assert.ok(id, cron.stdout);
    await env.users.alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => rootsOf(id).length >= 2 && isRootOf(id)(e),
      description: "two firings of the cron prompt",
      timeoutMs: 20_000,
    });
    assert.match(await env.ask("!oc schedule"), new RegExp(`\\*\\*#${id}\\*\\* 📨 prompt · (next .* UTC|firing now) · cron \`\\*/3 \\* \\* \\* \\* \\*\` \\(fired \\d+×\\)`));
    assert.equal(await env.ask(`!oc schedule rm ${id}`), `🗑️ Removed scheduled prompt #${id}; its schedule \`*/3 * * * * *\` ends here.`);
    await sleep(1000); // an occurrence that was firing at that moment still arrives
    const fired = rootsOf(id).length;
    await sleep(4500);
    assert.equal(rootsOf(id).length, fired, "no firing after rm");
    assert.equal(row(id)?.status, "cancelled");
    assert.equal(row(laterId)?.status, "cancelled");
    assert.ok(!(await env.modelRequests()).some((r) => r.lastUserText.includes("never to be sent")));
    assert.equal(await env.ask("!oc schedule rm 99999"), "No scheduled prompt #99999 waits in this room. `!oc schedule` lists them.");
  });
});
