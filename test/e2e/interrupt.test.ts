import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// A message sent while a turn runs: it waits by default (`busy queue`); `now <message>` stops
// the running step and goes next; in a `busy interrupt` room every message does, unless it ends
// in ` . queue`. The stopped turn ends as aborted and pushes nobody.

let env: TestEnv;
before(async () => {
  env = await TestEnv.create({ name: "intr" });
});
after(async () => {
  await env?.close();
});

async function streaming(root: string): Promise<void> {
  await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string } | undefined;
      return rel?.rel_type === "m.replace" && String((e.content["m.new_content"] as { body?: string }).body).includes("slow2");
    },
    description: `the reply in ${root} streaming`,
  });
}

describe("interrupting a running turn", () => {
  test("`now <message>` stops the running step; the message's answer follows; the stopped turn is recorded aborted", async () => {
    assert.match(await env.ask("!oc busy"), /^In this room \*\*queue\*\*/);
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc a slow answer to interrupt");
    await streaming(root);
    const now = await env.users.alice.sendText(env.roomId, "!oc now jump the queue", { threadRoot: root });
    const stopped = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(stopped.body).text, /^slow1 slow2.*\n\n⏹️ Aborted\.$/s);
    const next = await waitForFinalReply(env, root, now, sentAt);
    assert.equal(splitFooter(next.body).text, "Echo: jump the queue");
    assert.deepEqual(env.query<{ status: string }>("SELECT status FROM turns WHERE root_event_id = ? ORDER BY id", root), [{ status: "aborted" }, { status: "done" }]);
    // `status` says how the latest turn ended; an aborted one says aborted.
    await env.users.alice.sendText(env.roomId, "!oc slow one to stop", { threadRoot: root });
    await streaming(root);
    assert.equal(await env.ask("!oc abort", { threadRoot: root }), "⏹️ Aborting…");
    for (let i = 0; i < 100 && env.query<{ status: string }>("SELECT status FROM turns WHERE root_event_id = ? ORDER BY id DESC LIMIT 1", root)[0]?.status === "running"; i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(await env.ask("!oc status", { threadRoot: root }), /\nLast turn: ⏹️ aborted after \d+ s\n/);
  });

  test("in a `busy interrupt` room a plain follow-up interrupts; ` . queue` waits", async () => {
    assert.match(await env.ask("!oc busy interrupt"), /^In this room \*\*interrupt\*\* from now on/);
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc another slow answer");
    await streaming(root);
    const cut = await env.users.alice.sendText(env.roomId, "cut in here", { threadRoot: root });
    const stopped = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(stopped.body).text, /⏹️ Aborted\.$/);
    assert.equal(splitFooter((await waitForFinalReply(env, root, cut, sentAt)).body).text, "Echo: cut in here");

    const slow = await env.users.alice.sendText(env.roomId, "slow once more", { threadRoot: root });
    await streaming(root);
    const waits = await env.users.alice.sendText(env.roomId, "wait for it . queue", { threadRoot: root });
    const whole = await waitForFinalReply(env, root, slow, sentAt);
    assert.doesNotMatch(splitFooter(whole.body).text, /Aborted/);
    assert.equal(splitFooter((await waitForFinalReply(env, root, waits, sentAt)).body).text, "Echo: wait for it");
    assert.match(await env.ask("!oc busy queue"), /^In this room \*\*queue\*\*/);
  });
});
