// The embedded `opencode serve` runs as the bot's own user. Without a boundary, an agent turned by a
// prompt injection could read the bot's database (the Matrix token a password login stored), its
// config file, or its environment through /proc/<bot pid>/environ, and write code the bot later
// trusts. bubblewrap (`bwrap`, no root needed) gives the server a view of the machine in which the
// bot's state does not exist, the rest is read-only, and the bot's processes are invisible.
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import path from "node:path";

export type SandboxMode = "auto" | "bwrap" | "off";

export interface SandboxLayout {
  /** Where the agent works: the workspace and every project root (read-write). */
  writable: string[];
  /** The bot's own state: hidden entirely (an empty directory is mounted over each). */
  hiddenDirs: string[];
  /** Single files to hide (e.g. a config file that sits beside other things). */
  hiddenFiles: string[];
}

/** The bwrap arguments that run `command` with `layout`; pure, so it is tested without bwrap. */
export function bwrapArgs(layout: SandboxLayout, command: string, args: string[]): string[] {
  const out = [
    "--die-with-parent", // a bot killed with -9 takes its server along instead of leaving it streaming
    "--unshare-pid", // the bot's /proc entries (environ, cmdline, fds) are not there to read
    "--ro-bind", "/", "/",
    "--dev", "/dev",
    "--proc", "/proc",
    // /tmp stays shared and writable: tools expect it, and configs (OPENCODE_CONFIG) may live there.
    "--bind", "/tmp", "/tmp",
  ];
  // Order matters: later mounts go on top of earlier ones. Writable places first, then the hidden ones
  // over them, so that state inside a writable tree (refused by config checks anyway) stays hidden.
  for (const dir of unique(layout.writable)) out.push("--bind", dir, dir);
  for (const dir of unique(layout.hiddenDirs)) out.push("--tmpfs", dir);
  for (const file of unique(layout.hiddenFiles)) out.push("--ro-bind", "/dev/null", file);
  out.push("--", command, ...args); // bwrap keeps the working directory (the workspace, bound above)
  return out;
}

const unique = (list: string[]): string[] => [...new Set(list.map((p) => path.resolve(p)))];

/** OpenCode's own directories (its database, logs, auth, plugins): created so they can be bound read-write. */
export function opencodeStateDirs(env: Record<string, string>): string[] {
  const home = env.HOME ?? "/";
  const dirs = [
    path.join(env.XDG_DATA_HOME ?? path.join(home, ".local", "share"), "opencode"),
    path.join(env.XDG_CONFIG_HOME ?? path.join(home, ".config"), "opencode"),
    path.join(env.XDG_STATE_HOME ?? path.join(home, ".local", "state"), "opencode"),
    path.join(env.XDG_CACHE_HOME ?? path.join(home, ".cache"), "opencode"),
  ];
  for (const d of dirs) mkdirSync(d, { recursive: true });
  return dirs;
}

type Probe = { ok: true } | { ok: false; why: string };
const probes = new Map<string, Probe>();

/** Does bwrap exist and work here (user namespaces allowed)? Asked once per process, however many agents start. */
export function bwrapWorks(binary = "bwrap"): Probe {
  let probe = probes.get(binary);
  if (!probe) probes.set(binary, (probe = probeBwrap(binary)));
  return probe;
}

function probeBwrap(binary: string): Probe {
  const r = spawnSync(binary, ["--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--dev", "/dev", "--", "true"], { encoding: "utf8", timeout: 10_000 });
  if (r.error) return { ok: false, why: (r.error as NodeJS.ErrnoException).code === "ENOENT" ? "bwrap is not installed" : r.error.message };
  if (r.status !== 0) return { ok: false, why: (r.stderr || `exit code ${r.status}`).trim().split("\n")[0] ?? "failed" };
  return { ok: true };
}

/** What every agent's sandbox hides: the directory of the bot's database (with its -wal and -shm files) and its config file. */
export function botStateHidden(databasePath: string, configFile: string | undefined): Pick<SandboxLayout, "hiddenDirs" | "hiddenFiles"> {
  return { hiddenDirs: [path.dirname(path.resolve(databasePath))], hiddenFiles: configFile ? [path.resolve(configFile)] : [] };
}

/**
 * The layout to run an agent's process with (`who`: "the embedded OpenCode server", "the ACP agent x"),
 * or undefined for none. "bwrap" insists (`refuse` makes the error that stops the start); "auto"
 * falls back to no sandbox and `warn`s what that leaves open.
 */
export function chooseSandbox(
  mode: SandboxMode,
  layout: SandboxLayout,
  how: { who: string; warn: (msg: string) => void; refuse: (msg: string) => Error },
): SandboxLayout | undefined {
  if (mode === "off") return undefined;
  const probe = bwrapWorks();
  // A mount needs something to mount over: only what exists (the config may be /dev/null, or none).
  const is = (kind: "file" | "dir") => (p: string): boolean => {
    try {
      const st = statSync(p);
      return kind === "file" ? st.isFile() : st.isDirectory();
    } catch {
      return false;
    }
  };
  if (probe.ok) return { writable: layout.writable.filter(is("dir")), hiddenDirs: layout.hiddenDirs.filter(is("dir")), hiddenFiles: layout.hiddenFiles.filter(is("file")) };
  if (mode === "bwrap") throw how.refuse(`opencode.sandbox is "bwrap", but bubblewrap cannot run here: ${probe.why}. Install bubblewrap (apt install bubblewrap), or set opencode.sandbox to auto.`);
  how.warn(
    `${how.who} runs without a sandbox (${probe.why}): its agent can read the bot's database and config file. ` +
      "Install bubblewrap (apt install bubblewrap), or run the agent as another user or in its own container.",
  );
  return undefined;
}
