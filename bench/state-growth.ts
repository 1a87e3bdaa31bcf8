// How the bot's state grows with use: a real bot on the shared dev stack (Synapse, the scripted
// model, `opencode serve`) gets N streamed edits (long answers, a small edit window, several
// threads at once) and then M messages from a stranger (a user not in access.allowedUsers).
// Reports the database's size (bot.db + WAL) and the bot's RSS and heap before and after, and
// the rows per table. Several minutes on 2 cores.
//
//   TEST_STACK_FILE=/tmp/devstack/stack.json node --disable-warning=ExperimentalWarning bench/state-growth.ts
//   … -- --edits 10000 --strangers 10000 --threads 8 --words 400 --window 50
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { MatrixTestUser } from "../test/harness/matrix-user.ts";
import { loadStackInfo } from "../test/harness/stack.ts";
import { registerUser } from "../test/harness/synapse.ts";
import { BenchBot, benchDir, RssSampler } from "./lib/bot.ts";

const { values: args } = parseArgs({
  options: {
    edits: { type: "string", default: "10000" },
    strangers: { type: "string", default: "10000" },
    threads: { type: "string", default: "8" },
    words: { type: "string", default: "400" },
    window: { type: "string", default: "50" },
    senders: { type: "string", default: "8" },
  },
});
const cfg = {
  edits: Number(args.edits),
  strangers: Number(args.strangers),
  threads: Number(args.threads),
  words: Number(args.words),
  windowMs: Number(args.window),
  senders: Number(args.senders),
};

const log = (msg: string): void => void process.stderr.write(`[state-growth ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const mb = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 100) / 100;
const size = (path: string): number => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

const stack = loadStackInfo();
const hs = stack.synapse;
const suffix = `growth-${Date.now().toString(36)}`;
const [botAccount, a, m] = await Promise.all(["bot", "alice", "mallory"].map((who) => registerUser(hs.baseUrl, hs.sharedSecret, `${who}-${suffix}`)));
if (!botAccount || !a || !m) throw new Error("registration failed");
const alice = new MatrixTestUser(hs.baseUrl, a);
const mallory = new MatrixTestUser(hs.baseUrl, m);
const roomId = await alice.createRoom({ name: `state growth ${suffix}`, invite: [botAccount.userId, m.userId] });
await mallory.joinRoom(roomId);

const dataDir = mkdtempSync(join(stack.workDir, "bench-growth-"));
const dbPath = join(dataDir, "bot.db");
const bench = await BenchBot.start({
  homeserverUrl: hs.baseUrl,
  accessToken: botAccount.accessToken,
  allowedUsers: [a.userId],
  opencodeUrl: stack.opencode.url,
  workspaceDir: stack.workspaceDir,
  databasePath: dbPath,
  editWindowMs: cfg.windowMs,
  logLevel: "info",
});
const botHttp = `http://127.0.0.1:${bench.bot.httpPort}`;
const db = new Database(dbPath, { readonly: true, fileMustExist: true });
const one = <T>(sql: string, ...params: unknown[]): T => db.prepare(sql).get(...params) as T;

async function until(what: string, done: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${botHttp}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, "m").exec(text)?.[1] ?? 0);
}

interface Snapshot {
  dbMb: number;
  walMb: number;
  totalMb: number;
  rssMb: number;
  heapUsedMb: number;
  edits: number;
  matrixRequests: number;
}

async function snapshot(): Promise<Snapshot> {
  const lag = await bench.loopLag();
  const main = size(dbPath);
  const wal = size(`${dbPath}-wal`);
  return {
    dbMb: mb(main), walMb: mb(wal), totalMb: mb(main + wal + size(`${dbPath}-shm`)),
    rssMb: Math.round(bench.memory().rssMb * 10) / 10, heapUsedMb: Math.round(lag.heapUsedMb * 10) / 10,
    edits: await metric("bot_matrix_edits_total"), matrixRequests: await metric("bot_matrix_requests_total"),
  };
}

function rowCounts(): Record<string, number> {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as Array<{ name: string }>;
  return Object.fromEntries(tables.map(({ name }) => [name, one<{ n: number }>(`SELECT COUNT(*) AS n FROM "${name}"`).n]));
}

const turnOver = (promptEventId: string): boolean =>
  one<{ n: number }>("SELECT COUNT(*) AS n FROM turns WHERE prompt_event_id = ? AND status != 'running'", promptEventId).n > 0;

await until("the bot joining the room", () => one<{ n: number } | undefined>("SELECT COUNT(*) AS n FROM rooms WHERE room_id = ?", roomId)?.n === 1, 60_000);
await sleep(3000);
const before = await snapshot();
log(`before: ${JSON.stringify(before)}`);
const rss = new RssSampler(bench.pid, 500);

// 1. Streamed edits: `threads` workers have long texts answered one after another until enough
// edits were sent; each session gets 5 turns (follow-ups in its thread), then a new one starts.
const t1 = performance.now();
let turns = 0;
let failedTurns = 0;
async function worker(i: number): Promise<void> {
  let root: string | undefined;
  for (let n = 1; (await metric("bot_matrix_edits_total")) - before.edits < cfg.edits; n++) {
    const text = `long ${cfg.words} (growth worker ${i}, turn ${n})`;
    if (n % 5 === 1) root = undefined;
    const id = root === undefined ? await alice.sendText(roomId, `!oc ${text}`) : await alice.sendText(roomId, text, { threadRoot: root });
    root ??= id;
    await until(`turn ${n} of thread ${i}`, () => turnOver(id), 180_000);
    turns++;
    if (one<{ s: string }>("SELECT status AS s FROM turns WHERE prompt_event_id = ?", id).s !== "done") failedTurns++;
  }
}
let lastReport = 0;
const progress = setInterval(() => {
  void metric("bot_matrix_edits_total").then((e) => {
    if (e - lastReport >= 1000) log(`edits: ${e - before.edits} (turns ${turns})`);
    lastReport = e - (e % 1000);
  });
}, 5000);
await Promise.all(Array.from({ length: cfg.threads }, (_, i) => worker(i + 1)));
clearInterval(progress);
const editsMs = performance.now() - t1;
const afterEdits = await snapshot();
log(`after ${afterEdits.edits - before.edits} edits in ${turns} turns (${(editsMs / 1000).toFixed(0)} s): ${JSON.stringify(afterEdits)}`);

// 2. A stranger writes to the bot, again and again.
const t2 = performance.now();
const inboxBefore = one<{ n: number }>("SELECT COUNT(*) AS n FROM inbox").n;
let sent = 0;
await Promise.all(Array.from({ length: cfg.senders }, async () => {
  while (sent < cfg.strangers) {
    const k = ++sent;
    await mallory.sendText(roomId, `!oc let me in, please (${k})`);
    if (k % 1000 === 0) log(`stranger messages: ${k}`);
  }
}));
await until("the bot taking in every stranger message", () =>
  one<{ n: number }>("SELECT COUNT(*) AS n FROM inbox").n - inboxBefore >= cfg.strangers &&
  one<{ n: number }>("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'").n === 0, 600_000, 1000);
const strangersMs = performance.now() - t2;
const afterStrangers = await snapshot();
log(`after ${cfg.strangers} stranger messages (${(strangersMs / 1000).toFixed(0)} s): ${JSON.stringify(afterStrangers)}`);

// 3. Settled: a little later, nothing running.
await sleep(15_000);
const settled = await snapshot();
const peakRssMb = Math.round(rss.stop() * 10) / 10;
const rows = rowCounts();
db.close();
await bench.stop(join(dataDir, "bot.log"));
const closed = { dbMb: mb(size(dbPath)), walMb: mb(size(`${dbPath}-wal`)) };

const report = {
  date: new Date().toISOString(),
  config: cfg,
  turns, failedTurns,
  editsSent: settled.edits - before.edits,
  editsSeconds: Math.round(editsMs / 1000),
  strangerMessages: cfg.strangers,
  strangersSeconds: Math.round(strangersMs / 1000),
  before, afterEdits, afterStrangers, settled, peakRssMb,
  afterStop: closed,
  rows,
  dataDir,
};
mkdirSync(join(benchDir, "results"), { recursive: true });
const out = join(benchDir, "results", `state-growth-${report.date.slice(0, 10)}.json`);
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
log(`written to ${out}`);
process.exit(0);
