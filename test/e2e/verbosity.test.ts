import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// How much of the agent's work a reply shows, per room and per thread, set by a command that
// every backend answers to: quiet (the answer), normal (tool lines), verbose (tool outputs).

let env: TestEnv;
before(async () => {
  env = await TestEnv.create({ name: "verb" });
});
after(async () => {
  await env?.close();
});

/** A bash turn (printf: no earlier "allow always" of the shared OpenCode server covers it), allowed from the thread; resolves with the final reply's text without the footer. */
async function bashTurn(command: string, threadRoot?: string): Promise<{ root: string; text: string }> {
  const sentAt = performance.now();
  const prompt = await env.users.alice.sendText(env.roomId, threadRoot ? `bash: ${command}` : `!oc bash: ${command}`, threadRoot ? { threadRoot } : {});
  const root = threadRoot ?? prompt;
  await env.waitForBot(`the permission request for ${command}`, (e) => {
    const rel = e.content["m.relates_to"] as { event_id?: string } | undefined;
    return rel?.event_id === root && String(e.content.body).includes("Permission needed") && String(e.content.body).includes(command);
  });
  await env.users.alice.sendText(env.roomId, "!oc allow", { threadRoot: root });
  const reply = await waitForFinalReply(env, root, prompt, sentAt);
  return { root, text: splitFooter(reply.body).text };
}

describe("verbosity", () => {
  test("the room's default is normal: one compact line per tool call", async () => {
    assert.match(await env.ask("!oc verbosity"), /^Verbosity in this room: \*\*normal\*\* \(the default\)/);
    const { text } = await bashTurn("printf %s normal-run");
    assert.equal(text, "▶️ bash `printf %s normal-run` ✓\n\nCommand finished: normal-run");
  });

  test("verbose shows what the tool printed, fenced; quiet shows only the answer", async () => {
    assert.match(await env.ask("!oc verbosity verbose"), /^Verbosity in this room: \*\*verbose\*\*/);
    const verbose = await bashTurn("printf %s verbose-output-42");
    assert.equal(verbose.text, "▶️ bash `printf %s verbose-output-42` ✓\n```\nverbose-output-42\n```\n\nCommand finished: verbose-output-42");

    assert.match(await env.ask("!oc verbosity quiet"), /^Verbosity in this room: \*\*quiet\*\*/);
    const quiet = await bashTurn("printf %s quiet-run");
    assert.equal(quiet.text, "Command finished: quiet-run");

    // A thread's own setting wins over the room's, for its next turns.
    assert.match(await env.ask("!oc verbosity normal", { threadRoot: quiet.root }), /^Verbosity in this thread: \*\*normal\*\*/);
    const again = await bashTurn("printf %s thread-normal", quiet.root);
    assert.equal(again.text, "▶️ bash `printf %s thread-normal` ✓\n\nCommand finished: thread-normal");
    assert.match(await env.ask("!oc verbosity", { threadRoot: quiet.root }), /\(set for this thread\)/);
  });

  test("a wrong level gets the usage line; every backend's help lists the command", async () => {
    assert.match(await env.ask("!oc verbosity loud"), /`loud` is not a verbosity/);
    assert.match(await env.ask("!oc help"), /`!oc verbosity \[quiet\|normal\|verbose\|default\]`/);
  });
});
