import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { git } from "../../src/opencode/safe-git.ts";
import { mergeWorktree, type WorktreeRow } from "../../src/opencode/worktrees.ts";

// `!oc merge` on real repositories that the agent has made hostile: everything git could be
// told to run by the repository writes a marker file, and no marker may appear.

const root = mkdtempSync(join(tmpdir(), "safe-git-"));
let n = 0;
// The test's own git: plain, run only while the repositories are still harmless.
const sh = (cwd: string, ...args: string[]): string =>
  execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", ...args], { cwd, encoding: "utf8", stdio: "pipe", env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null" } }).trim();

/** A project on `main` with one commit, and a worktree on `opencode/<name>` with an uncommitted file. */
function project(): { w: WorktreeRow; markers: string; head: string } {
  const dir = join(root, `case-${++n}`);
  const projectDir = join(dir, "project");
  const directory = join(dir, "worktree");
  const markers = join(dir, "markers");
  mkdirSync(markers, { recursive: true });
  mkdirSync(projectDir);
  writeFileSync(join(projectDir, "README.md"), "# project\n");
  sh(projectDir, "init", "-q", "-b", "main");
  sh(projectDir, "add", "-A");
  sh(projectDir, "commit", "-qm", "initial");
  sh(projectDir, "worktree", "add", "-q", "-b", "opencode/feat", directory);
  writeFileSync(join(directory, "feature.txt"), "the session's work\n");
  const w: WorktreeRow = { roomId: "!r:x", rootEventId: "$root", name: "feat", branch: "opencode/feat", directory, projectDir, createdBy: "@a:x", createdAt: 0, mergedAt: null };
  return { w, markers, head: sh(projectDir, "rev-parse", "HEAD") };
}

const touch = (markers: string, name: string): string => `touch '${join(markers, name)}';true`;
const hookNames = ["pre-commit", "commit-msg", "post-commit", "pre-merge-commit", "post-merge", "post-checkout", "reference-transaction", "post-index-change"];
function plantHooks(dir: string, markers: string, prefix: string): void {
  mkdirSync(dir, { recursive: true });
  for (const h of hookNames) {
    writeFileSync(join(dir, h), `#!/bin/sh\n${touch(markers, `${prefix}-${h}`)}\n`);
    chmodSync(join(dir, h), 0o755);
  }
}

test("hooks, fsmonitor, hooksPath, signing and a nested repository's filter run nothing; the merge happens", async () => {
  const { w, markers } = project();
  // A nested repository committed in the worktree, with a clean filter of its own and a file git must re-read.
  const nested = join(w.directory, "vendor");
  mkdirSync(nested);
  sh(nested, "init", "-q", "-b", "main");
  writeFileSync(join(nested, ".gitattributes"), "*.txt filter=nest\n");
  writeFileSync(join(nested, "lib.txt"), "lib\n");
  sh(nested, "add", "-A");
  sh(nested, "commit", "-qm", "nested");
  sh(w.directory, "-c", "advice.addEmbeddedRepo=false", "add", "vendor");
  sh(w.directory, "commit", "-qm", "vendor");
  sh(nested, "config", "filter.nest.clean", `${touch(markers, "nested-filter")} cat`);
  const later = new Date(Date.now() + 5_000);
  execFileSync("touch", ["-d", later.toISOString(), join(nested, "lib.txt")]);

  plantHooks(join(w.projectDir, ".git", "hooks"), markers, "hooks");
  sh(w.projectDir, "config", "core.fsmonitor", touch(markers, "fsmonitor"));
  sh(w.projectDir, "config", "commit.gpgSign", "true");
  const gpg = join(markers, "..", "fake-gpg");
  writeFileSync(gpg, `#!/bin/sh\n${touch(markers, "gpg")}\nexit 1\n`);
  chmodSync(gpg, 0o755);
  sh(w.projectDir, "config", "gpg.program", gpg);
  sh(w.projectDir, "config", "core.editor", touch(markers, "editor"));
  plantHooks(join(markers, "..", "agent-hooks"), markers, "hooksPath");
  sh(w.projectDir, "config", "core.hooksPath", join(markers, "..", "agent-hooks"));

  const result = await mergeWorktree(w, "the session's work (from Matrix)");
  assert.equal(result.kind, "merged", JSON.stringify(result));
  assert.deepEqual(readdirSync(markers), [], "nothing the repository names ran");
  assert.equal(readFileSync(join(w.projectDir, "feature.txt"), "utf8"), "the session's work\n");
  assert.match(sh(w.projectDir, "log", "-1", "--format=%s"), /^Merge branch 'opencode\/feat' \(feat\)$/);
});

test("a filter driver, a merge driver in the worktree's config, an include: refused by name, nothing ran", async () => {
  const cases: Array<[string, (w: WorktreeRow, markers: string) => void, RegExp]> = [
    ["filter", (w, m) => {
      sh(w.projectDir, "config", "filter.Evil.clean", `${touch(m, "filter")} cat`);
      writeFileSync(join(w.directory, ".gitattributes"), "* filter=Evil\n");
    }, /^the repository's config \(`.+\/project\/\.git\/config`\) sets `filter\.Evil\.clean`, which would make git run a program as the bot \(a filter driver\); remove it and try again$/],
    ["merge driver", (w, m) => {
      sh(w.directory, "config", "extensions.worktreeConfig", "true");
      sh(w.directory, "config", "--worktree", "merge.ours.driver", touch(m, "merge-driver"));
    }, /^the repository's config \(`.+\/project\/\.git\/worktrees\/worktree\/config\.worktree`\) sets `merge\.ours\.driver`, which would make git run a program as the bot \(a merge driver\); remove it/],
    ["include", (w, m) => {
      writeFileSync(join(m, "..", "more.config"), `[core]\n\tfsmonitor = ${touch(m, "included")}\n`);
      sh(w.projectDir, "config", "include.path", join(m, "..", "more.config"));
    }, /sets `include\.path`, which pulls in another config file, which the bot does not check; remove it and try again$/],
  ];
  for (const [name, plant, reason] of cases) {
    const { w, markers, head } = project();
    plant(w, markers);
    const result = await mergeWorktree(w, "work");
    assert.equal(result.kind, "refused", name);
    assert.match(result.kind === "refused" ? result.reason : "", reason, name);
    assert.deepEqual(readdirSync(markers), [], `${name}: nothing ran`);
    assert.equal(sh(w.projectDir, "rev-parse", "HEAD"), head, `${name}: nothing merged`);
    assert.equal(sh(w.projectDir, "rev-parse", "opencode/feat"), head, `${name}: nothing committed on the branch`);
  }
});

test("a worktree whose .git file leads to another repository is refused", async () => {
  const { w, markers, head } = project();
  const elsewhere = join(markers, "..", "elsewhere");
  sh(root, "init", "-q", elsewhere);
  writeFileSync(join(w.directory, ".git"), `gitdir: ${join(elsewhere, ".git")}\n`);
  const result = await mergeWorktree(w, "work");
  assert.deepEqual(result, { kind: "refused", into: undefined, reason: `the worktree \`${w.directory}\` no longer belongs to the repository of \`${w.projectDir}\` (its \`.git\` file was changed)` });
  assert.equal(sh(w.projectDir, "rev-parse", "HEAD"), head);
});

test("git gets none of the bot's secrets and no system or global config", async () => {
  process.env.MATRIX_ACCESS_TOKEN = "syt_not_for_git";
  const { w } = project();
  const env = await git(w.projectDir, ["-c", "alias.show-env=!env", "show-env"]);
  assert.equal(env.code, 0, env.stderr);
  assert.doesNotMatch(env.stdout, /MATRIX_|syt_not_for_git/);
  assert.match(env.stdout, /^GIT_CONFIG_NOSYSTEM=1$/m);
  assert.match(env.stdout, /^GIT_CONFIG_GLOBAL=\/dev\/null$/m);
  const fetch = await git(w.projectDir, ["fetch", "-q", w.directory]);
  assert.match(fetch.stderr, /transport 'file' not allowed/, "no transport, so no lazy fetch either");
});
