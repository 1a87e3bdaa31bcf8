// Git as the bot runs it (`!oc merge`), in repositories the agent can write: `.git/config`,
// `.git/hooks/*`, `.gitattributes`, a worktree's `.git` file. Any program git starts from there
// would run as the bot, beside its Matrix token. So git here runs nothing the repository names:
//
// 1. A minimal environment (childEnv): none of the bot's secrets, no system or global config,
//    no transport at all (a partial clone's lazy fetch would run ssh or a remote's upload-pack).
// 2. Settings on the command line, which beat every config file: no hooks, no fsmonitor, no
//    editor or pager, no signing, never into nested repositories (their config is not checked).
// 3. What the command line cannot switch off, because the attacker picks the name — filter, diff
//    and merge drivers that `.gitattributes` selects, a remote's upload-pack — and includes (config
//    read from any file at run time): `unsafeConfig()` reads the config without running anything,
//    and the caller refuses.
// Not covered: a process the agent left running could change the config between check and use.
import { execFile } from "node:child_process";
import { realpath } from "node:fs/promises";
import { resolve } from "node:path";
import { childEnv } from "../process/child-env.ts";

export interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `-c` settings: the command line wins over the repository's (and a worktree's) config files. */
const overrides = [
  "core.hooksPath=/dev/null", // no hook runs, wherever the agent put one
  "core.fsmonitor=false", // a command status, add and merge would run
  "core.editor=:", // `:` is git's "no editor"
  "sequence.editor=:",
  "core.pager=cat",
  "commit.gpgSign=false", // signing and verifying run gpg.program
  "tag.gpgSign=false",
  "merge.verifySignatures=false",
  "submodule.recurse=false", // a nested repository has a config of its own, never checked here
  "diff.ignoreSubmodules=all", // status and diff would otherwise run `git status` inside each one
  "protocol.allow=never",
].flatMap((s) => ["-c", s]);

const env = (): Record<string, string> =>
  childEnv({
    extra: {
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_ALLOW_PROTOCOL: "", // an empty allowlist beats any protocol.*.allow in the repository
      GIT_NO_LAZY_FETCH: "1",
      GIT_TERMINAL_PROMPT: "0",
      GIT_PAGER: "cat",
      LC_ALL: "C",
    },
  });

/** Runs git without a shell, hardened as above; a non-zero exit is a result, not an exception. */
export function git(cwd: string, args: string[]): Promise<GitResult> {
  return new Promise((done, fail) => {
    const opts = { cwd, env: env(), maxBuffer: 8 * 1024 * 1024, timeout: 5 * 60_000, killSignal: "SIGKILL" as const };
    execFile("git", [...overrides, ...args], opts, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1) : 0;
      if (code === -1) fail(err as Error);
      else done({ code, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

/** Config keys that make git run a program, or read more config, under a name the command line cannot know. */
const unsafeKeys: Array<[RegExp, string]> = [
  [/^filter\..+\.(clean|smudge|process)$/, "would make git run a program as the bot (a filter driver)"],
  [/^diff\..+\.(command|textconv)$/, "would make git run a program as the bot (a diff driver)"],
  [/^merge\..+\.driver$/, "would make git run a program as the bot (a merge driver)"],
  [/^remote\..+\.(uploadpack|receivepack|vcs)$/, "would make git run a program as the bot"],
  [/^include\.path$|^includeif\..+\.path$/, "pulls in another config file, which the bot does not check"],
];

/**
 * Why the repository git finds at `cwd` is unsafe to run git in, or undefined. Reads the config
 * files (includes not followed: a named pipe would hang) with `git config`, which runs nothing.
 */
export async function unsafeConfig(cwd: string): Promise<string | undefined> {
  const list = await git(cwd, ["config", "--list", "--no-includes", "--show-scope", "--show-origin", "-z"]);
  if (list.code !== 0) return `git cannot read the repository's config: ${list.stderr.split("\n")[0] ?? ""}`;
  // -z: scope NUL origin NUL key [LF value] NUL, repeated.
  const fields = list.stdout.split("\0");
  for (let i = 0; i + 2 < fields.length; i += 3) {
    const [scope = "", origin = "", entry = ""] = fields.slice(i, i + 3);
    if (scope === "command") continue;
    const key = entry.split("\n")[0] ?? "";
    const hit = unsafeKeys.find(([re]) => re.test(key.toLowerCase()));
    if (!hit) continue;
    const file = origin.startsWith("file:") ? resolve(cwd, origin.slice("file:".length)) : origin;
    return `the repository's config (\`${file}\`) sets \`${key}\`, which ${hit[1]}; remove it and try again`;
  }
  return undefined;
}

/** The repository's shared git directory (`.git` of the main checkout, for a worktree too), resolved. */
export async function commonGitDir(cwd: string): Promise<string | undefined> {
  const r = await git(cwd, ["rev-parse", "--path-format=absolute", "--git-common-dir"]);
  return r.code === 0 && r.stdout ? realpath(r.stdout).catch(() => undefined) : undefined;
}
