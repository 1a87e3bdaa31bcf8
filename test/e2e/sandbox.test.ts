import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MatrixTestUser, type MatrixEvent } from "../harness/matrix-user.ts";
import { repoDir } from "../harness/stack.ts";

// What a newcomer does: `npm run sandbox -- --scripted`, log in with the printed details, write to
// the bot in the printed room, read the streamed answer, press Ctrl-C. The sandbox brings its own
// Synapse, OpenCode and bot, so this file does not use the shared stack of test/run.ts.
// The command is the package.json script itself, run without npm in between: npm answers a Ctrl-C
// by re-raising SIGINT on itself, which would hide the sandbox's own exit code.

const READY_TIMEOUT_MS = 180_000; // a first run installs Synapse; test/run.ts has done that already
const sandboxScript = (JSON.parse(readFileSync(join(repoDir, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts.sandbox;

let child: ChildProcess | undefined;
let output = "";
after(() => {
  // Only if an assertion failed half-way: do not leave the sandbox running.
  if (child?.pid && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch { /* gone */ }
  }
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

test("`npm run sandbox -- --scripted` prints working login details, the bot answers in the room, Ctrl-C cleans up", { timeout: READY_TIMEOUT_MS + 120_000 }, async (t) => {
  assert.ok(sandboxScript, "package.json has a sandbox script");
  const [cmd, ...args] = sandboxScript.split(/\s+/);
  assert.equal(cmd, "node");
  const t0 = performance.now();
  // Own process group, so that the SIGINT below reaches the whole tree as a terminal's Ctrl-C does.
  child = spawn(process.execPath, [...args, "--scripted"], { cwd: repoDir, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stdout?.on("data", (d: string) => void (output += d));
  child.stderr?.on("data", (d: string) => void (output += d));
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
  t.diagnostic(`sandbox ready after ${(readyMs / 1000).toFixed(1)} s: ${homeserverUrl} ${userId} ${roomId}`);
  const tree = descendants(child.pid!);
  assert.ok(tree.length >= 3, `synapse, opencode and the bot run below the sandbox (found ${tree.length})`);

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
    const sentAt = performance.now();
    const root = await me.sendText(roomId, "!oc say hello sandbox");
    const first = await me.waitForRoomEvent({
      roomId,
      sender: botUserId,
      type: "m.room.message",
      match: (e) => {
        const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
        return rel?.rel_type === "m.thread" && rel.event_id === root;
      },
      description: "the bot's reply in a thread on the prompt",
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
      description: "the final version of the reply (with its footer)",
      timeoutMs: 60_000,
    });
    const latest = await me.latestBody(roomId, first.event_id);
    t.diagnostic(`final reply after ${((performance.now() - sentAt) / 1000).toFixed(1)} s, ${latest.editCount} edits: ${JSON.stringify(latest.body)}`);
    assert.ok(latest.body.includes("Echo: say hello sandbox"), `the streamed reply has the model's answer: ${latest.body}`);
  } finally {
    await me.stopSync();
  }

  // Ctrl-C: the whole process group gets SIGINT, as from a terminal.
  const tStop = performance.now();
  process.kill(-child.pid!, "SIGINT");
  const end = await Promise.race([
    exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the sandbox did not exit within 60 s of SIGINT:\n${output}`)), 60_000)),
  ]);
  t.diagnostic(`stopped ${((performance.now() - tStop) / 1000).toFixed(1)} s after SIGINT`);
  assert.deepEqual(end, { code: 0, signal: null }, `exit code 0 after Ctrl-C; output:\n${output}`);
  assert.match(output, /all stopped and cleaned up/);
  const left = tree.filter(running);
  assert.deepEqual(left, [], `no process of the sandbox is left running: ${left.join(", ")}`);
  assert.ok(!existsSync(stateDir), `${stateDir} was removed`);
});
