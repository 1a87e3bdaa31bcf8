import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MatrixTestUser, type MatrixEvent } from "../harness/matrix-user.ts";
import { repoDir } from "../harness/stack.ts";

// What a newcomer does: `npm run sandbox -- --scripted --letta`, log in with the printed details,
// write to OpenCode and to Letta in the printed room, read the streamed answers, press Ctrl-C. The
// sandbox brings its own Synapse, OpenCode, Letta and bot, so this file does not use the shared
// stack of test/run.ts (nor its Letta: .ci/run has installed the venv, so Letta only boots here).
// The command is the package.json script itself, run without npm in between: npm answers a Ctrl-C
// by re-raising SIGINT on itself, which would hide the sandbox's own exit code.

const READY_TIMEOUT_MS = 240_000; // a first run installs Synapse (test/run.ts has done that) and Letta (.ci/run)
const sandboxScript = (JSON.parse(readFileSync(join(repoDir, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts.sandbox;

let child: ChildProcess | undefined;
let output = "";
after(async () => {
  // Only if an assertion failed half-way: do not leave the sandbox running. Ctrl-C first, so that
  // it removes what it made outside its state directory too (Letta's PostgreSQL data in /tmp).
  const c = child;
  if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => c.once("exit", () => resolve()));
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-c.pid!, sig);
    } catch { /* gone */ }
  };
  signal("SIGINT");
  const timer = setTimeout(() => signal("SIGKILL"), 30_000);
  await gone;
  clearTimeout(timer);
  signal("SIGKILL"); // anything of the group that outlived the sandbox
});

function waitForOutput(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const m = re.exec(output);
      if (m) resolve(m);
      return !!m;
    };
    if (check()) return;
    const onData = (): void => {
      if (check()) done();
    };
    const onExit = (): void => {
      done();
      reject(new Error(`the sandbox exited before printing ${re}:\n${output}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; output so far:\n${output}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      child?.stdout?.off("data", onData);
      child?.off("exit", onExit);
    };
    child?.stdout?.on("data", onData);
    child?.once("exit", onExit);
  });
}

/** All processes below `root`, from /proc (Linux). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(name), ppid);
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const p = queue.shift()!;
    for (const [pid, ppid] of parent) {
      if (ppid === p) {
        out.push(pid);
        queue.push(pid);
      }
    }
  }
  return out;
}

/** Running, as opposed to gone or a zombie that has finished and waits to be reaped. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

const isFinal = (body: string): boolean => /\n— \S.*$/.test(body) || body.startsWith("— ");

/** Sends `text` into the room and waits for the final version (with its footer) of the bot's threaded reply. */
async function ask(me: MatrixTestUser, roomId: string, botUserId: string, text: string): Promise<{ body: string; editCount: number; seconds: number }> {
  const sentAt = performance.now();
  const root = await me.sendText(roomId, text);
  const first = await me.waitForRoomEvent({
    roomId,
    sender: botUserId,
    type: "m.room.message",
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
      return rel?.rel_type === "m.thread" && rel.event_id === root;
    },
    description: `the bot's reply in a thread on ${text}`,
    timeoutMs: 60_000,
  });
  const bodyOf = (e: MatrixEvent): string | undefined => {
    const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
    if (e.event_id === first.event_id) return e.content.body as string;
    if (rel?.rel_type === "m.replace" && rel.event_id === first.event_id) return (e.content["m.new_content"] as { body: string }).body;
    return undefined;
  };
  await me.waitForRoomEvent({
    roomId,
    sender: botUserId,
    match: (e) => {
      const body = bodyOf(e);
      return body !== undefined && isFinal(body);
    },
    description: `the final version of the reply to ${text} (with its footer)`,
    timeoutMs: 60_000,
  });
  const latest = await me.latestBody(roomId, first.event_id);
  return { ...latest, seconds: (performance.now() - sentAt) / 1000 };
}

function runSandbox(args: string[]): ChildProcess {
  // Own process group, so that a SIGINT to it reaches the whole tree as a terminal's Ctrl-C does.
  const c = spawn(process.execPath, args, { cwd: repoDir, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  c.stdout?.setEncoding("utf8");
  c.stderr?.setEncoding("utf8");
  c.stdout?.on("data", (d: string) => void (output += d));
  c.stderr?.on("data", (d: string) => void (output += d));
  return c;
}

const sandboxArgs = (): string[] => {
  assert.ok(sandboxScript, "package.json has a sandbox script");
  const [cmd, ...args] = sandboxScript.split(/\s+/);
  assert.equal(cmd, "node");
  return args;
};

test("`npm run sandbox -- --letta` without --scripted says plainly that it needs --scripted", async () => {
  output = "";
  child = runSandbox([...sandboxArgs(), "--letta"]);
  const code = await new Promise<number | null>((resolve) => child!.once("close", (c) => resolve(c)));
  assert.equal(code, 2);
  assert.match(output, /^sandbox: --letta needs --scripted: `npm run sandbox -- --scripted --letta`\.$/m);
  assert.match(output, /cut off from the network and answers from the offline scripted model/);
});

test("`npm run sandbox -- --scripted --letta` prints working login details, OpenCode and Letta answer in the room, Ctrl-C cleans up", { timeout: READY_TIMEOUT_MS + 180_000 }, async (t) => {
  const args = sandboxArgs();
  const t0 = performance.now();
  output = "";
  child = runSandbox([...args, "--scripted", "--letta"]);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child!.once("exit", (code, signal) => resolve({ code, signal })));

  await waitForOutput(/Ctrl-C stops everything/, READY_TIMEOUT_MS);
  const readyMs = performance.now() - t0;
  const field = (re: RegExp): string => {
    const m = re.exec(output);
    assert.ok(m?.[1], `the sandbox printed ${re}:\n${output}`);
    return m[1];
  };
  const homeserverUrl = field(/Homeserver URL:\s+(\S+)/);
  const userId = field(/User:\s+(@\S+)/);
  const username = field(/user name: ([^)\s]+)/);
  const password = field(/Password:\s+(\S+)/);
  const roomId = field(/Room:\s+(!\S+)/);
  const botUserId = field(/Bot:\s+(@[^,\s]+)/);
  const stateDir = join(repoDir, field(/state in (\S+);/));
  const lettaLine = /Letta ready at \S+ with agent "sandbox-agent" .* in (\S+ s)/.exec(output);
  t.diagnostic(`sandbox ready after ${(readyMs / 1000).toFixed(1)} s (Letta started in ${lettaLine?.[1] ?? "?"}): ${homeserverUrl} ${userId} ${roomId}`);
  assert.match(output, /or:\s+!letta say hello\s+\(agent "sandbox-agent" on Letta at http:\/\/127\.0\.0\.1:\d+ answers "Echo: say hello"\)/);
  const tree = descendants(child.pid!);
  assert.ok(tree.length >= 5, `synapse, opencode, letta, its postgres and the bot run below the sandbox (found ${tree.length})`);

  // Log in as a Matrix client would, with the user name and password.
  const res = await fetch(`${homeserverUrl}/_matrix/client/v3/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: username }, password, initial_device_display_name: "sandbox test" }),
  });
  assert.equal(res.status, 200, `password login works: ${await res.clone().text()}`);
  const login = (await res.json()) as { user_id: string; access_token: string };
  assert.equal(login.user_id, userId);

  const me = new MatrixTestUser(homeserverUrl, { userId: login.user_id, accessToken: login.access_token });
  try {
    await me.startSync();
    const oc = await ask(me, roomId, botUserId, "!oc say hello sandbox");
    t.diagnostic(`OpenCode's final reply after ${oc.seconds.toFixed(1)} s, ${oc.editCount} edits: ${JSON.stringify(oc.body)}`);
    assert.ok(oc.body.includes("Echo: say hello sandbox"), `the streamed reply has the model's answer: ${oc.body}`);

    // As printed: `!letta say hello` reaches the sandbox's agent, which answers through the scripted model.
    const letta = await ask(me, roomId, botUserId, "!letta say hello");
    t.diagnostic(`Letta's final reply after ${letta.seconds.toFixed(1)} s, ${letta.editCount} edits: ${JSON.stringify(letta.body)}`);
    const cut = letta.body.lastIndexOf("\n\n— ");
    assert.equal(letta.body.slice(0, cut), "Echo: say hello", letta.body);
    assert.match(letta.body.slice(cut + 2), /^— letta sandbox-agent · 1 step · [\d,]+ tokens · \d+\.\ds$/);
  } finally {
    await me.stopSync();
  }

  // Ctrl-C: the whole process group gets SIGINT, as from a terminal.
  const tStop = performance.now();
  process.kill(-child.pid!, "SIGINT");
  let timer: NodeJS.Timeout | undefined;
  const end = await Promise.race([
    exited,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the sandbox did not exit within 60 s of SIGINT:\n${output}`)), 60_000);
    }),
  ]).finally(() => clearTimeout(timer)); // a pending timer would hold the test file open for the rest of the minute
  t.diagnostic(`stopped ${((performance.now() - tStop) / 1000).toFixed(1)} s after SIGINT`);
  assert.deepEqual(end, { code: 0, signal: null }, `exit code 0 after Ctrl-C; output:\n${output}`);
  assert.match(output, /stopped letta \(pid \d+\) and its postgres/);
  assert.match(output, /all stopped and cleaned up/);
  const left = tree.filter(running);
  assert.deepEqual(left, [], `no process of the sandbox is left running: ${left.join(", ")}`);
  assert.ok(!existsSync(stateDir), `${stateDir} was removed`);
});
