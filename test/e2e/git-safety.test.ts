import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startTestOpencode, type TestOpencode } from "../harness/opencode.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The agent is the attacker: from a worktree thread it plants what would make git run a program
// (fsmonitor, hooks, a filter driver), then Alice runs `!oc merge`. The bot's git must run none of
// it. The agent may run bash here without asking, as after an "allow always".

let env: TestEnv;
let server: TestOpencode;
let ws: string;
let markers: string;
const git = (cwd: string, ...args: string[]): string => execFileSync("git", args, { cwd, encoding: "utf8" }).trim();

before(async () => {
  const stack = loadStackInfo();
  ws = mkdtempSync(join(stack.workDir, "ws-gitsafety-"));
  markers = mkdtempSync(join(stack.workDir, "markers-gitsafety-"));
  writeFileSync(join(ws, "README.md"), "# a project\n");
  git(ws, "init", "-q", "-b", "main");
  git(ws, "add", "-A");
  git(ws, "-c", "user.name=Test", "-c", "user.email=test@localhost", "commit", "-qm", "initial commit");
  server = await startTestOpencode({
    workspaceDir: ws,
    stateDir: mkdtempSync(join(stack.workDir, "oc-gitsafety-")),
    modelBaseUrl: stack.model.baseUrl,
    permissionBash: "allow",
  });
  env = await TestEnv.create({
    name: "gitsafety",
    botEnv: { OPENCODE_SERVER_URL: server.url, OPENCODE_WORKSPACE_DIR: ws, BOT_COMPLETION_NOTICE_AFTER_MS: "600000" },
  });
});
after(async () => {
  await env?.close();
  await server?.stop();
});

async function openWorktree(name: string): Promise<string> {
  await env.users.alice.sendText(env.roomId, `!oc worktree ${name}`);
  const rootEvent = await env.waitForBot(`the thread of worktree ${name}`, (e) => String(e.content.body).startsWith(`🌿 **opencode/${name}**`));
  return rootEvent.event_id;
}

/** The agent runs `command` in the worktree (the scripted model turns `bash: …` into a bash call). */
async function agentRuns(root: string, command: string): Promise<string> {
  const sentAt = performance.now();
  const id = await env.users.alice.sendText(env.roomId, `bash: ${command}`, { threadRoot: root });
  return splitFooter((await waitForFinalReply(env, root, id, sentAt)).body).text;
}

describe("git run by the bot runs nothing the agent planted", () => {
  test("fsmonitor and hooks written by the agent do not run on `!oc merge`; the merge happens", async () => {
    const root = await openWorktree("planted-hooks");
    const planted = await agentRuns(
      root,
      `git config core.fsmonitor 'touch ${markers}/fsmonitor;true' && hooks=$(git rev-parse --path-format=absolute --git-path hooks) && ` +
        `for h in pre-commit post-commit post-merge; do printf '#!/bin/sh\\ntouch ${markers}/hook-%s\\n' $h > "$hooks/$h" && chmod +x "$hooks/$h"; done && ` +
        `echo work > feature.txt && echo planted in "$hooks"`,
    );
    assert.match(planted, new RegExp(`Command finished: planted in ${ws}/\\.git/hooks$`));
    assert.equal(git(ws, "config", "core.fsmonitor"), `touch ${markers}/fsmonitor;true`, "the agent wrote the project's config");
    assert.deepEqual(readdirSync(markers), [], "nothing ran yet");

    assert.match(
      await env.ask("!oc merge", { threadRoot: root }),
      /^✅ Merged `opencode\/planted-hooks` into `main` \(merge commit `[0-9a-f]{7,}`\); the session's uncommitted changes were committed on the branch first\. 1 file changed: `A feature\.txt`\.$/,
    );
    assert.deepEqual(readdirSync(markers), [], "neither the fsmonitor command nor a hook ran");
    assert.equal(readFileSync(join(ws, "feature.txt"), "utf8"), "work\n");
    git(ws, "config", "--unset", "core.fsmonitor");
  });

  test("a filter driver the agent configured makes `!oc merge` refuse, naming it; once removed, the merge goes through", async () => {
    const root = await openWorktree("planted-filter");
    const head = git(ws, "rev-parse", "HEAD");
    const planted = await agentRuns(
      root,
      `git config filter.ev.clean 'touch ${markers}/filter;cat' && echo 'notes.txt filter=ev' > .gitattributes && echo notes > notes.txt && echo planted`,
    );
    assert.match(planted, /Command finished: planted$/);

    assert.equal(
      await env.ask("!oc merge", { threadRoot: root }),
      `⚠️ Could not merge \`opencode/planted-filter\`: the repository's config (\`${ws}/.git/config\`) sets \`filter.ev.clean\`, ` +
        "which would make git run a program as the bot (a filter driver); remove it and try again. Nothing was merged.",
    );
    assert.deepEqual(readdirSync(markers), [], "the filter did not run");
    assert.equal(git(ws, "rev-parse", "HEAD"), head, "main is as it was");
    assert.equal(existsSync(join(ws, "notes.txt")), false);

    assert.match(await agentRuns(root, "git config --unset filter.ev.clean && echo removed"), /Command finished: removed$/);
    assert.match(
      await env.ask("!oc merge", { threadRoot: root }),
      /^✅ Merged `opencode\/planted-filter` into `main` .* 2 files changed: `A \.gitattributes`, `A notes\.txt`\.$/,
    );
    assert.deepEqual(readdirSync(markers), []);
  });
});
