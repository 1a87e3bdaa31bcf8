import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/log.ts";
import type { MatrixSender } from "../../src/matrix/sender.ts";
import { Scheduler, type ScheduledPromptTarget } from "../../src/schedule/scheduler.ts";
import { ScheduleStore, heldTimeoutMs } from "../../src/schedule/store.ts";
import { openDatabase } from "../../src/store/db.ts";
import { ThreadStore } from "../../src/store/threads.ts";

// The `send` CLI against a homeserver stand-in on loopback: a send that hangs ends in time and is
// left to the bot; a CLI that dies mid-send leaves a held row that the bot's scheduler takes over,
// posting with the CLI's own transaction id (so never twice).

const repo = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "send-held-"));
let server: Server;
let hsUrl: string;
let mode: "hang" | "forbidden" = "hang";
const puts: string[] = [];
const open = new Set<ServerResponse>();
let onPut: (() => void) | undefined;

before(async () => {
  server = createServer((req, res) => {
    open.add(res);
    res.on("close", () => open.delete(res));
    if (req.method === "PUT") {
      puts.push(req.url ?? "");
      onPut?.();
      if (mode === "forbidden") res.writeHead(403, { "content-type": "application/json" }).end('{"errcode":"M_FORBIDDEN","error":"not in room"}');
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  hsUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const res of open) res.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

let n = 0;
function cli(dbPath: string, timeoutMs: number): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", join(repo, "src/cli/send.ts"), "--room", "!room:x", "--prompt", `nightly report ${++n}`], {
    cwd: repo,
    env: { PATH: process.env.PATH ?? "", BOT_CONFIG: "/dev/null", MATRIX_HOMESERVER_URL: hsUrl, MATRIX_ACCESS_TOKEN: "syt_test", BOT_ALLOWED_USERS: "@a:x", BOT_DATABASE_PATH: dbPath, MATRIX_REQUEST_TIMEOUT_MS: String(timeoutMs) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return { child, done: new Promise((r) => child.on("close", (code) => r({ code, stdout, stderr }))) };
}

function statusOf(dbPath: string): Array<{ status: string; marker_event_id: string | null }> {
  const db = openDatabase(dbPath);
  try {
    return db.prepare("SELECT status, marker_event_id FROM scheduled_prompts").all() as Array<{ status: string; marker_event_id: string | null }>;
  } finally {
    db.close();
  }
}

test("a send the homeserver never answers ends within matrix.requestTimeoutMs; the row is left to the bot", async () => {
  mode = "hang";
  const db = join(dir, "hang.db");
  const t0 = performance.now();
  const out = await cli(db, 1000).done;
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, /^warning: the homeserver did not answer PUT \/_matrix\/client\/v3\/rooms\/!room%3Ax\/send\/m\.room\.message\/sched\.\d+\.1\.0 within 1 s$/m);
  assert.match(out.stdout, /^#1 queued for !room:x: the bot posts it \(once\)/);
  assert.ok(performance.now() - t0 < 15_000);
  assert.deepEqual(statusOf(db), [{ status: "pending", marker_event_id: null }], "due: the bot's scheduler posts it");
});

test("a send the homeserver refuses removes the row and fails", async () => {
  mode = "forbidden";
  const db = join(dir, "refused.db");
  const out = await cli(db, 5000).done;
  assert.equal(out.code, 1);
  assert.match(out.stderr, /M_FORBIDDEN/);
  assert.deepEqual(statusOf(db), []);
});

test("a CLI killed mid-send leaves a held row; the scheduler takes it over with the CLI's transaction id", async () => {
  mode = "hang";
  const db = join(dir, "killed.db");
  const before = puts.length;
  const run = cli(db, 60_000);
  await new Promise<void>((r) => (onPut = r));
  onPut = undefined;
  run.child.kill("SIGKILL");
  await run.done;
  const cliTxn = decodeURIComponent((puts[before] ?? "").split("/").pop() ?? "");
  assert.match(cliTxn, /^sched\.\d+\.1\.0$/);
  assert.deepEqual(statusOf(db), [{ status: "held", marker_event_id: null }]);

  const handle = openDatabase(db);
  const store = new ScheduleStore(handle);
  assert.equal(store.releaseStaleHeld(Date.now(), heldTimeoutMs), 0, "a fresh hold is the CLI's own");
  const sent: string[] = [];
  const enqueued: string[] = [];
  const sender = { send: (_room: string, _content: unknown, opts: { txnId?: string }) => (sent.push(opts.txnId ?? ""), Promise.resolve("$marker")) } as unknown as MatrixSender;
  const target: ScheduledPromptTarget = {
    name: "opencode",
    roomDirectory: () => dir,
    createSessionFor: () => Promise.resolve("ses_1"),
    enqueue: (_thread, req) => void enqueued.push(req.text),
    sendNext: () => Promise.resolve(),
    ready: () => true,
  };
  const scheduler = new Scheduler({
    db: handle, store, target, threads: new ThreadStore(handle), sender, log: createLogger("silent"),
    pollIntervalMs: 60_000, timezone: "UTC", heldTimeoutMs: 0,
  });
  await scheduler.tick();
  await scheduler.stop();
  assert.deepEqual(sent, [cliTxn], "posted once, with the CLI's transaction id: the homeserver drops it if the CLI's post went through");
  assert.deepEqual(enqueued, [`[cli] nightly report ${n}`]);
  assert.deepEqual(statusOf(db), [{ status: "done", marker_event_id: null }]);
});
