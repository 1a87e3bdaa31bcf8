import { existsSync } from "node:fs";
import type { Db } from "../store/db.ts";
import { commonGitDir, git, unsafeConfig, type GitResult } from "./safe-git.ts";

export interface WorktreeRow {
  roomId: string;
  rootEventId: string;
  name: string;
  branch: string;
  directory: string;
  projectDir: string;
  createdBy: string;
  createdAt: number;
  mergedAt: number | null;
}

interface Raw {
  room_id: string;
  root_event_id: string;
  name: string;
  branch: string;
  directory: string;
  project_dir: string;
  created_by: string;
  created_at: number;
  merged_at: number | null;
}

/** Session threads that work in a git worktree of their room's project (`!oc worktree`). */
export class WorktreeStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  insert(w: Omit<WorktreeRow, "createdAt" | "mergedAt">): void {
    this.db
      .prepare(
        `INSERT INTO worktrees (room_id, root_event_id, name, branch, directory, project_dir, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(w.roomId, w.rootEventId, w.name, w.branch, w.directory, w.projectDir, w.createdBy, Date.now());
  }

  get(roomId: string, rootEventId: string): WorktreeRow | undefined {
    const r = this.db.prepare("SELECT * FROM worktrees WHERE room_id = ? AND root_event_id = ?").get(roomId, rootEventId) as Raw | undefined;
    return r && {
      roomId: r.room_id,
      rootEventId: r.root_event_id,
      name: r.name,
      branch: r.branch,
      directory: r.directory,
      projectDir: r.project_dir,
      createdBy: r.created_by,
      createdAt: r.created_at,
      mergedAt: r.merged_at,
    };
  }

  markMerged(roomId: string, rootEventId: string): void {
    this.db.prepare("UPDATE worktrees SET merged_at = ? WHERE room_id = ? AND root_event_id = ?").run(Date.now(), roomId, rootEventId);
  }
}

/** `-c user.name=… -c user.email=…` when the repository has no identity (commits would fail). */
async function identity(cwd: string): Promise<string[]> {
  const email = await git(cwd, ["config", "user.email"]);
  return email.code === 0 && email.stdout ? [] : ["-c", "user.name=matrix-agent-bot", "-c", "user.email=matrix-agent-bot@localhost"];
}

export type MergeResult =
  | { kind: "merged"; into: string; commit: string; files: string[]; committed: boolean }
  | { kind: "nothing"; into: string }
  | { kind: "conflict"; into: string; files: string[] }
  | { kind: "refused"; into: string | undefined; reason: string };

const firstLines = (text: string): string => text.split("\n").filter((l) => l.trim() && !/^hint:/.test(l)).slice(0, 4).join(" ").slice(0, 400);

/** The branch new work lands on: the remote's default if there is one, else what the project has checked out. */
async function defaultBranch(projectDir: string): Promise<{ want: string | undefined; current: string | undefined }> {
  const current = await git(projectDir, ["symbolic-ref", "--quiet", "--short", "HEAD"]);
  const remote = await git(projectDir, ["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"]);
  const cur = current.code === 0 ? current.stdout : undefined;
  return { want: remote.code === 0 ? remote.stdout.replace(/^origin\//, "") : cur, current: cur };
}

/**
 * Why git must not run in the project or the worktree (see safe-git.ts), or undefined. The
 * worktree's `.git` file is the agent's to write: it must still lead to the project's repository.
 */
async function unsafeRepositories(w: WorktreeRow, worktreeExists: boolean): Promise<string | undefined> {
  const project = await commonGitDir(w.projectDir);
  if (!project) return `\`${w.projectDir}\` is not a git repository`;
  if (worktreeExists && (await commonGitDir(w.directory)) !== project) {
    return `the worktree \`${w.directory}\` no longer belongs to the repository of \`${w.projectDir}\` (its \`.git\` file was changed)`;
  }
  return (await unsafeConfig(w.projectDir)) ?? (worktreeExists ? await unsafeConfig(w.directory) : undefined);
}

/**
 * `git add -A`, leaving out tracked nested repositories: staging one runs `git status` inside it,
 * under a config nobody checked. A session's changes to a submodule's commit stay uncommitted.
 */
async function stageAll(dir: string): Promise<GitResult> {
  const index = await git(dir, ["ls-files", "--stage", "-z"]);
  if (index.code !== 0) return index;
  const nested = index.stdout.split("\0").filter((e) => e.startsWith("160000 ")).map((e) => `:(exclude,literal)${e.slice(e.indexOf("\t") + 1)}`);
  return git(dir, ["add", "-A", "--", ".", ...nested]);
}

/**
 * Commits what the session left uncommitted in the worktree, then merges its branch into the
 * default branch of the project (a merge commit). On conflicts the merge is aborted, so the
 * project is left as it was, and the conflicting files are reported.
 */
export async function mergeWorktree(w: WorktreeRow, message: string): Promise<MergeResult> {
  const worktreeExists = existsSync(w.directory);
  const unsafe = await unsafeRepositories(w, worktreeExists);
  if (unsafe) return { kind: "refused", into: undefined, reason: unsafe };
  const { want, current } = await defaultBranch(w.projectDir);
  if (!want || !current) return { kind: "refused", into: undefined, reason: `the project \`${w.projectDir}\` has no branch checked out (detached HEAD)` };
  if (want !== current) return { kind: "refused", into: want, reason: `the project has \`${current}\` checked out, not its default branch \`${want}\`` };
  let committed = false;
  if (worktreeExists) {
    const status = await git(w.directory, ["status", "--porcelain"]);
    if (status.code === 0 && status.stdout) {
      const add = await stageAll(w.directory);
      const commit = add.code === 0 ? await git(w.directory, [...(await identity(w.directory)), "commit", "-q", "-m", message]) : add;
      if (commit.code !== 0) return { kind: "refused", into: want, reason: `committing the worktree's changes failed: ${firstLines(commit.stderr || commit.stdout)}` };
      committed = true;
    }
  }
  const ahead = await git(w.projectDir, ["rev-list", "--count", `${want}..${w.branch}`]);
  if (ahead.code !== 0) return { kind: "refused", into: want, reason: firstLines(ahead.stderr) };
  if (ahead.stdout === "0") return { kind: "nothing", into: want };
  const merge = await git(w.projectDir, [...(await identity(w.projectDir)), "merge", "--no-ff", "--no-edit", "--no-stat", "-m", `Merge branch '${w.branch}' (${w.name})`, w.branch]);
  if (merge.code === 0) {
    const commit = await git(w.projectDir, ["rev-parse", "--short", "HEAD"]);
    const files = await git(w.projectDir, ["diff", "--no-ext-diff", "--no-textconv", "--name-status", "HEAD^1", "HEAD"]);
    return { kind: "merged", into: want, commit: commit.stdout, files: files.stdout ? files.stdout.split("\n") : [], committed };
  }
  const unmerged = await git(w.projectDir, ["diff", "--no-ext-diff", "--no-textconv", "--name-only", "--diff-filter=U"]);
  const inMerge = (await git(w.projectDir, ["rev-parse", "-q", "--verify", "MERGE_HEAD"])).code === 0;
  if (inMerge) await git(w.projectDir, ["merge", "--abort"]);
  if (unmerged.stdout) return { kind: "conflict", into: want, files: unmerged.stdout.split("\n") };
  return { kind: "refused", into: want, reason: firstLines(merge.stderr || merge.stdout) };
}
