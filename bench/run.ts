// `npm run bench`: boots the same real stack as the tests (Synapse on loopback, the scripted
// model streaming at a fixed token cadence, the real `opencode serve`), drives the real bot
// process through it, prints a table and writes bench/results/bench-<date>.json + latest.json.
// `npm run bench -- --quick` is a small run for development; `--help` lists the knobs.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { MatrixTestUser } from "../test/harness/matrix-user.ts";
import { startTestOpencode } from "../test/harness/opencode.ts";
import { startScriptedModel } from "../test/harness/scripted-model.ts";
import { bootStack, cacheDir, type Stack } from "../test/harness/stack.ts";
import { registerUser, startSynapse, SYNAPSE_VERSION, type RegisteredUser } from "../test/harness/synapse.ts";
import { ProxyProcess, type ProxyStats, type SendRecord } from "./counting-proxy.ts";
import { BenchBot, benchDir, RssSampler, type BenchBotOptions } from "./lib/bot.ts";
import { CpuMeter } from "./lib/cpu.ts";
import { OpencodeEventRecorder } from "./lib/oc-events.ts";
import { isConnectionNotice, splitFooter, versionsOf, waitForAck, waitForFinal, waitForReply, type ReplyWatch, type Version } from "./lib/replies.ts";
import { round, summarize, type Summary } from "./lib/stats.ts";
import { evaluateTargets, printReport, type RateLimitPhase, type Report, type ScaleLevel } from "./lib/report.ts";
import { runServersPhase } from "./lib/servers-phase.ts";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
    only: { type: "string" }, // comma list of phases: floor,relay,start,scale,servers,ratelimit
    window: { type: "string" }, // BOT_EDIT_WINDOW_MS (default: the bot's default, 1000)
    "floor-samples": { type: "string" },
    "relay-sessions": { type: "string" },
    "relay-words": { type: "string" },
    scale: { type: "string" }, // e.g. 50,100,200
    "scale-words": { type: "string" },
    "start-samples": { type: "string" },
    "servers-rooms": { type: "string" },
    "servers-sessions": { type: "string" },
    "servers-words": { type: "string" },
    "servers-outage-words": { type: "string" },
    "servers-concurrency": { type: "string" },
    "rate-words": { type: "string" },
    "rate-token-ms": { type: "string" },
    "late-ms": { type: "string" },
    "scale-timeout-ms": { type: "string" },
    profile: { type: "boolean", default: false }, // --cpu-prof the scale bot and one start
    keep: { type: "boolean", default: false }, // keep the work dir
    "bot-env": { type: "string", multiple: true }, // KEY=VALUE for every bot (experiments)
  },
});

if (args.help) {
  process.stdout.write(`npm run bench [-- options]
  --quick               small sizes (for development)
  --only a,b            phases: floor,relay,start,scale,servers,ratelimit (default: all)
  --window MS           the bot's edit window (default 1000, the bot's default)
  --floor-samples N     plain send→sync round trips (default 40)
  --relay-sessions N    sequential streamed replies for relay/ack/finish/cost (default 10)
  --relay-words N       words per relay reply, ≤200 (default 200: 4 s at 20 ms/token)
  --scale L1,L2,..      concurrent sessions per level (default 50,100,200)
  --scale-words N       words per reply at scale (default 60)
  --start-samples N     bot starts per kind (default 5)
  --servers-rooms N     servers phase: rooms bound round-robin to 3 OpenCode servers (default 1000)
  --servers-sessions N  servers phase: sessions at once per server (default 20)
  --servers-words N     servers phase: words per answer in the burst (default 60, ≤200)
  --servers-outage-words N  words per answer while one server is killed (default 200: 4 s at 20 ms/token, ≤200)
  --servers-concurrency N   room creations / binding commands in flight (default 16)
  --rate-words N        words of the answer under default rate limits (default 200)
  --rate-token-ms MS    token cadence of that answer (default 150: a 30 s answer)
  --late-ms MS          a final state later than this after the session went idle is "late" (default 10000)
  --scale-timeout-ms MS a reply at scale not final after this is "lost" (default 120000)
  --profile             write CPU profiles of the scale bot and of one start to bench/results/profiles
  --keep                keep the work directory
  --bot-env KEY=VALUE   extra environment for every bot process (repeatable), e.g. to try a setting
`);
  process.exit(0);
}

const quick = args.quick ?? false;
const num = (v: string | undefined, full: number, small: number): number => (v !== undefined ? Number(v) : quick ? small : full);
const cfg = {
  quick,
  windowMs: num(args.window, 1000, 1000),
  floorSamples: num(args["floor-samples"], 40, 10),
  relaySessions: num(args["relay-sessions"], 10, 2),
  relayWords: Math.min(200, num(args["relay-words"], 200, 100)),
  scaleLevels: (args.scale ?? (quick ? "10,20" : "50,100,200")).split(",").map(Number).filter((n) => n > 0),
  scaleWords: Math.min(200, num(args["scale-words"], 60, 30)),
  startSamples: num(args["start-samples"], 5, 2),
  serversRooms: num(args["servers-rooms"], 1000, 60),
  serversSessions: num(args["servers-sessions"], 20, 5),
  serversWords: Math.min(200, num(args["servers-words"], 60, 30)),
  serversOutageWords: Math.min(200, num(args["servers-outage-words"], 200, 200)),
  serversConcurrency: num(args["servers-concurrency"], 16, 16),
  rateWords: Math.min(200, num(args["rate-words"], 200, 60)),
  rateTokenMs: num(args["rate-token-ms"], 150, 150),
  tokenMs: 20, // the scripted model's default cadence, as in the tests
  lateMs: num(args["late-ms"], 10_000, 10_000),
  scaleTimeoutMs: num(args["scale-timeout-ms"], 120_000, 120_000),
  profile: args.profile ?? false,
  botEnv: Object.fromEntries((args["bot-env"] ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])),
};
const phases = new Set((args.only ?? "floor,relay,start,scale,servers,ratelimit").split(","));

const t00 = performance.now();
const say = (line: string): void => void process.stderr.write(`[bench +${((performance.now() - t00) / 1000).toFixed(0)}s] ${line}\n`);
// Others may share the machine: the 1-minute load average at each phase's start and end goes into the JSON.
const loads: Array<{ phase: string; at: string; load1: number }> = [];
const markLoad = (phase: string, at: "start" | "end"): void => void loads.push({ phase, at, load1: round(os.loadavg()[0] ?? 0, 2) });
const resultsDir = join(benchDir, "results");
const profileDir = join(resultsDir, "profiles");
const logDir = join(resultsDir, "logs"); // the bots' log lines of the latest run
mkdirSync(resultsDir, { recursive: true });
if (cfg.profile) mkdirSync(profileDir, { recursive: true });
const workDir = mkdtempSync(join(os.tmpdir(), "bot-bench-"));
// The bots' databases in a directory of their own: the bot refuses state beside the agent's workspace.
const stateDir = join(workDir, "bot-state");
mkdirSync(stateDir);
const expectedWords = (n: number): string => Array.from({ length: n }, (_, i) => `word${i + 1}`).join(" ");

// ---------------------------------------------------------------------------------------------
say(`work dir ${workDir}; booting Synapse, the scripted model and opencode serve`);
const stack: Stack = await bootStack(workDir, { rateLimits: "raised" });
for (const [name, ms] of stack.timings) say(`  ${name}: ${(ms / 1000).toFixed(1)} s`);
const hs = stack.info.synapse.baseUrl;
const reg = (name: string): Promise<RegisteredUser> => registerUser(hs, stack.info.synapse.sharedSecret, `${name}-${Date.now().toString(36)}`);
const recorder = new OpencodeEventRecorder(stack.info.opencode.url, stack.info.workspaceDir);
await recorder.start();

const cleanups: Array<() => Promise<unknown>> = [];
const git = (...a: string[]): string => {
  try {
    return execFileSync("git", a, { cwd: join(benchDir, ".."), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
};
const report: Report = {
  date: new Date().toISOString(),
  commit: `${git("rev-parse", "--short", "HEAD") || "?"}${git("status", "--porcelain", "src") ? " (src modified)" : ""}`,
  machine: {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? "?",
    memGb: round(os.totalmem() / 2 ** 30, 0),
    node: process.version,
    synapse: SYNAPSE_VERSION,
    platform: `${os.platform()} ${os.release()}`,
  },
  config: cfg,
  phases: {},
};

function botOptions(over: Partial<BenchBotOptions> & Pick<BenchBotOptions, "homeserverUrl" | "accessToken" | "allowedUsers" | "databasePath">): BenchBotOptions {
  return {
    opencodeUrl: stack.info.opencode.url,
    workspaceDir: stack.info.workspaceDir,
    editWindowMs: cfg.windowMs,
    extraEnv: cfg.botEnv,
    ...over,
  };
}

async function waitForJoin(user: MatrixTestUser, room: string, who: string, timeoutMs = 60_000): Promise<void> {
  await user.waitForRoomEvent({
    roomId: room,
    type: "m.room.member",
    match: (e) => e.state_key === who && e.content.membership === "join",
    description: `${who} joining`,
    timeoutMs,
  });
}

/** Resolves once all `n` replies are final, or OpenCode finished all their sessions and no final came for 10 s. */
async function untilSettled(n: number, roots: string[], progress: { finals: number; lastChange: number }, dbPath: string): Promise<void> {
  for (;;) {
    await sleep(500);
    if (progress.finals >= n) return;
    if (roots.length < n || performance.now() - progress.lastChange < 10_000) continue;
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    let ids: Array<string | undefined>;
    try {
      const q = db.prepare("SELECT session_id FROM threads WHERE root_event_id = ?");
      ids = roots.map((r) => (q.get(r) as { session_id: string } | undefined)?.session_id);
    } finally {
      db.close();
    }
    if (ids.every((id) => id !== undefined && recorder.sessions.get(id)?.idleAt !== undefined)) return;
  }
}

function sessionIdOf(dbPath: string, root: string): string | undefined {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT session_id FROM threads WHERE root_event_id = ?").get(root) as { session_id: string } | undefined)?.session_id;
  } finally {
    db.close();
  }
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  }));
  return out;
}

function routeSummary(s: ProxyStats): { writes: number; syncs: number; other: number } {
  let writes = 0;
  let syncs = 0;
  for (const [route, n] of Object.entries(s.byRoute)) {
    if (/\/sync$/.test(route)) syncs += n;
    else if (/^(PUT|POST|DELETE) /.test(route)) writes += n;
  }
  return { writes, syncs, other: s.requests - writes - syncs };
}

/** One prompt's answer as Alice saw it, measured against the OpenCode events. */
interface Observed {
  ok: boolean;
  error?: string;
  ackMs?: number;
  finishMs?: number;
  /** final visible − prompt sent */
  totalMs?: number;
  exact?: boolean;
  edits?: number;
  perDeltaMs: number[];
  perEditMs: number[];
  /** Time between the starts of two consecutive streamed edits (the first post excluded). */
  editIntervals: number[];
  /** Per edit: newest delta → the bot's PUT at the proxy; PUT → Synapse's answer; answer → Alice's sync. */
  editSplit: Array<{ bot: number; put: number; sync: number }>;
  marks?: {
    sentAt: number; putDoneAt: number; replyId: string; replyAt: number; finalId: string; finalAt: number;
    idleAt?: number; sessionId?: string; versions: Version[];
  };
  /** Alice's PUT of the prompt. */
  alicePutMs?: number;
  /** Alice's PUT answered → the bot's first PUT at the proxy; its PUT; answer → Alice's sync. */
  ackSplit?: { bot: number; put: number; sync: number };
  /** Session idle → the bot's PUT of the final version; its PUT; answer → Alice's sync. */
  finishSplit?: { bot: number; put: number; sync: number };
  deltasInFinal: number;
  deltasMissing: number;
  tokens: number;
}

/** Sends `!oc long N` in `room` and follows the answer to its final version. */
async function promptAndObserve(
  alice: MatrixTestUser, botUser: string, dbPath: string, room: string, words: number, timeoutMs: number, exactCheck = false,
  hooks: { onRoot?: (root: string) => void; onFinal?: () => void } = {},
): Promise<Observed> {
  const obs: Observed = { ok: false, perDeltaMs: [], perEditMs: [], editIntervals: [], editSplit: [], deltasInFinal: 0, deltasMissing: 0, tokens: words };
  const sentAt = performance.now();
  let root: string;
  try {
    root = await alice.sendText(room, `!oc long ${words}`);
  } catch (err) {
    obs.error = `send failed: ${String(err)}`;
    return obs;
  }
  const putDoneAt = performance.now();
  hooks.onRoot?.(root);
  const w: ReplyWatch = { room, root, sentAt };
  try {
    const ack = await waitForAck(alice, botUser, w, timeoutMs);
    obs.ackMs = ack.receivedAt - sentAt;
    const reply = await waitForReply(alice, botUser, w, timeoutMs);
    const final = await waitForFinal(alice, botUser, room, reply.event_id, timeoutMs);
    hooks.onFinal?.();
    obs.totalMs = final.receivedAt - sentAt;
    const sessionId = sessionIdOf(dbPath, root);
    const idleAt = sessionId ? recorder.sessions.get(sessionId)?.idleAt : undefined;
    if (idleAt !== undefined) obs.finishMs = final.receivedAt - idleAt;
    const versions = versionsOf(alice, botUser, room, reply.event_id);
    obs.edits = versions.length - 1;
    const last = versions.at(-1) as Version;
    // The newest version Alice holds must be the final one, with exactly the model's text.
    obs.exact = last.final && splitFooter(last.body).text === expectedWords(words);
    if (exactCheck) {
      const latest = await alice.latestBody(room, reply.event_id);
      obs.exact &&= splitFooter(latest.body).text === expectedWords(words);
    }
    obs.marks = {
      sentAt, putDoneAt, replyId: reply.event_id, replyAt: reply.receivedAt, finalId: final.event_id, finalAt: final.receivedAt, versions,
      ...(idleAt === undefined ? {} : { idleAt }), ...(sessionId === undefined ? {} : { sessionId }),
    };
    obs.ok = obs.exact;
    if (!obs.exact) obs.error = `final text differs: ${JSON.stringify(last.body.slice(0, 120))}…`;
  } catch (err) {
    // What was there instead: did OpenCode finish the session, and what did Alice last see?
    const sessionId = sessionIdOf(dbPath, root);
    const marks = sessionId ? recorder.sessions.get(sessionId) : undefined;
    const mine = alice.seenEvents(room).filter((e) => e.sender === botUser && e.type === "m.room.message");
    const lastEv = mine.at(-1);
    const lastBody = lastEv ? String((lastEv.content["m.new_content"] as { body?: string } | undefined)?.body ?? lastEv.content.body ?? "") : "(nothing)";
    const state = !sessionId ? "no session in the bot's database" : marks?.idleAt ? "session idle in OpenCode" : marks?.busyAt ? "session still busy in OpenCode" : "session never busy";
    obs.error = `${(String(err).split("\n")[0] ?? "").replace(/ in ![^ ]+.*$/, "").replace(/^Error: @[^ ]+ /, "")}; ${state}; last seen: ${JSON.stringify(lastBody.slice(0, 40))}`;
  }
  return obs;
}

/** Splits the ack, the finish and (with `relay`) every edit at the bot's PUTs as the proxy saw them. */
function addSplits(obs: Observed, sendList: SendRecord[], relay: boolean): void {
  const m = obs.marks;
  if (!m) return;
  const sends = new Map(sendList.flatMap((r) => (r.eventId ? [[r.eventId, r] as const] : [])));
  const split: Splitter = (from, eventId, seenAt) => {
    const r = sends.get(eventId);
    return r && { bot: r.start - epoch(from), put: r.end - r.start, sync: epoch(seenAt) - r.end };
  };
  obs.alicePutMs = m.putDoneAt - m.sentAt;
  obs.ackSplit = split(m.putDoneAt, m.replyId, m.replyAt);
  if (m.idleAt !== undefined) obs.finishSplit = split(m.idleAt, m.finalId, m.finalAt);
  if (relay && m.sessionId) relayLatencies(m.sessionId, m.versions, obs, split);
  if (relay) {
    // Start-to-start time between two streamed edits of this reply, as the proxy saw them.
    const starts = m.versions.filter((v) => !v.final).flatMap((v) => {
      const r = sends.get(v.eventId);
      return r ? [r.start] : [];
    }).sort((a, b) => a - b);
    for (let i = 2; i < starts.length; i++) obs.editIntervals.push((starts[i] as number) - (starts[i - 1] as number));
  }
}

type Splitter = (from: number, eventId: string, seenAt: number) => { bot: number; put: number; sync: number } | undefined;
/** performance.now() of this process → epoch ms, comparable with the proxy's timestamps. */
const epoch = (perfNow: number): number => performance.timeOrigin + perfNow;

/**
 * Per delta: from the moment the benchmark's own OpenCode subscription received it to the first
 * version of the reply Alice saw that contains the text up to it. Per edit: from the newest
 * delta an edit carries to that edit being seen (the pipeline latency without the coalescing hold).
 */

function relayLatencies(sessionId: string, versions: Version[], obs: Observed, split: Splitter): void {
  for (const part of recorder.partsOf(sessionId)) {
    for (const d of part.deltas) {
      const prefix = part.text.slice(0, d.length).trim();
      if (!prefix) continue;
      const v = versions.find((x) => x.body.includes(prefix));
      if (!v) obs.deltasMissing++;
      else if (v.final) obs.deltasInFinal++;
      else obs.perDeltaMs.push(v.at - d.at);
    }
    for (const v of versions) {
      if (v.final) continue;
      let newest: { at: number } | undefined;
      for (const d of part.deltas) if (v.body.includes(part.text.slice(0, d.length).trim())) newest = d;
      if (!newest) continue;
      obs.perEditMs.push(v.at - newest.at);
      const parts = split(newest.at, v.eventId, v.at);
      if (parts) obs.editSplit.push(parts);
    }
  }
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

function splitSummary(xs: Array<{ bot: number; put: number; sync: number }>): { bot: Summary; put: Summary; sync: Summary } {
  return { bot: summarize(xs.map((x) => x.bot)), put: summarize(xs.map((x) => x.put)), sync: summarize(xs.map((x) => x.sync)) };
}

// ---------------------------------------------------------------------------------------------
// floor: a plain client's send, seen through a second client's sync.
let floorP50 = Number.NaN;
let floorP99 = Number.NaN;
let alice: MatrixTestUser | undefined;
let aliceAccount: RegisteredUser | undefined;

async function getAlice(): Promise<MatrixTestUser> {
  if (alice) return alice;
  aliceAccount = await reg("alice");
  alice = new MatrixTestUser(hs, aliceAccount);
  await alice.startSync();
  cleanups.push(() => (alice as MatrixTestUser).stopSync());
  return alice;
}

interface RoundTrip {
  /** send → the event in the second client's sync */
  ms: number;
  /** send → the PUT answered */
  putMs: number;
}

/** A thread reply to edit, for round trips with edits shaped like the bot's. */
async function editTarget(sender: MatrixTestUser, room: string, tag: string): Promise<string> {
  const root = await sender.sendText(room, `${tag} root`);
  return sender.sendEvent(room, "m.room.message", {
    msgtype: "m.notice", body: "⏳ Working…", "m.mentions": {},
    "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } },
  });
}

/** With `editOf`: instead of a plain message, an edit of that event shaped like the bot's (HTML, 20–200 words). */
async function floorRoundTrips(
  sender: MatrixTestUser, receiver: MatrixTestUser, room: string, n: number, tag: string, editOf?: string, warmup = 3,
): Promise<RoundTrip[]> {
  const out: RoundTrip[] = [];
  for (let i = 0; i < n + warmup; i++) {
    const t0 = performance.now();
    const id = editOf
      ? await sender.sendEvent(room, "m.room.message", editLike(editOf, expectedWords(20 + ((i * 5) % 180))))
      : await sender.sendText(room, `${tag} ${i}`);
    const putMs = performance.now() - t0;
    const seen = await receiver.waitForRoomEvent({ roomId: room, match: (e) => e.event_id === id, timeoutMs: 15_000 });
    if (i >= warmup) out.push({ ms: seen.receivedAt - t0, putMs }); // the first ones warm up connections and caches
    if (n > 1) await sleep(100);
  }
  return out;
}

function editLike(eventId: string, text: string): Record<string, unknown> {
  const html = `<p>${text}</p>`;
  const content = { msgtype: "m.notice", body: text, format: "org.matrix.custom.html", formatted_body: html, "m.mentions": {} };
  return {
    ...content, body: `* ${text}`, formatted_body: `* ${html}`,
    "m.new_content": content, "m.relates_to": { rel_type: "m.replace", event_id: eventId },
  };
}

/**
 * The floor measured again while the bot works: a plain edit every 500 ms in a room of its own,
 * so that the relay can be compared with what any client gets from this Synapse at the same moment.
 */
class FloorProbe {
  readonly samples: Array<RoundTrip & { at: number }> = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(a: MatrixTestUser, b: MatrixTestUser, room: string) {
    this.loop = (async () => {
      const target = await editTarget(a, room, "probe");
      while (this.running) {
        const at = performance.now();
        const [rt] = await floorRoundTrips(a, b, room, 1, "probe", target, 0).catch(() => [] as RoundTrip[]);
        if (rt !== undefined) this.samples.push({ at, ...rt });
        await sleep(400);
      }
    })();
  }

  async stop(): Promise<Array<RoundTrip & { at: number }>> {
    this.running = false;
    await this.loop;
    return this.samples;
  }
}

/** How long OpenCode takes to answer GET /global/health (what the bot's health check asks, with a 2 s timeout). */
class HealthProbe {
  private readonly samples: number[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(url: string) {
    this.loop = (async () => {
      while (this.running) {
        const t0 = performance.now();
        const ok = await fetch(url, { signal: AbortSignal.timeout(60_000) }).then((r) => r.ok, () => false);
        if (ok) this.samples.push(performance.now() - t0);
        await sleep(500);
      }
    })();
  }

  async stop(): Promise<number[]> {
    this.running = false;
    await this.loop;
    return this.samples;
  }
}

let floorPair: { a: MatrixTestUser; b: MatrixTestUser; room: string } | undefined;

if (phases.has("floor") || phases.has("relay")) {
  say("floor: plain send → Synapse → second client's sync");
  markLoad("floor", "start");
  const [fa, fb] = await Promise.all([reg("floor-a"), reg("floor-b")]);
  const a = new MatrixTestUser(hs, fa);
  const b = new MatrixTestUser(hs, fb);
  await Promise.all([a.startSync(), b.startSync()]);
  const room = await a.createRoom({ invite: [fb.userId] });
  await b.joinRoom(room);
  floorPair = { a, b, room };
  const direct = await floorRoundTrips(a, b, room, cfg.floorSamples, "floor");
  const edits = await floorRoundTrips(a, b, room, cfg.floorSamples, "floor-edit", await editTarget(a, room, "floor-edit"));
  // The same through the counting proxy the bot talks through, to show what the proxy adds.
  const proxy = await ProxyProcess.start(hs);
  const viaProxy = new MatrixTestUser(proxy.url, fa);
  const proxied = await floorRoundTrips(viaProxy, b, room, Math.max(5, Math.round(cfg.floorSamples / 2)), "floor-proxy");
  await proxy.stop();
  cleanups.push(() => Promise.all([a.stopSync(), b.stopSync()]));
  const s = summarize(direct.map((x) => x.ms));
  floorP50 = s.p50;
  floorP99 = s.p99;
  report.phases.floor = {
    roundTripMs: s,
    putMs: summarize(direct.map((x) => x.putMs)),
    editRoundTripMs: summarize(edits.map((x) => x.ms)),
    editPutMs: summarize(edits.map((x) => x.putMs)),
    viaCountingProxyMs: summarize(proxied.map((x) => x.ms)),
  };
  say(`  floor p50 ${s.p50} ms, p99 ${s.p99} ms`);
  markLoad("floor", "end");
}

// ---------------------------------------------------------------------------------------------
// relay, ack, finish, cost: sequential streamed replies in one room.
if (phases.has("relay")) {
  markLoad("relay", "start");
  say(`relay: ${cfg.relaySessions} sequential replies of ${cfg.relayWords} words at ${cfg.tokenMs} ms/token, window ${cfg.windowMs} ms`);
  const al = await getAlice();
  const botAccount = await reg("relay-bot");
  const proxy = await ProxyProcess.start(hs);
  cleanups.push(() => proxy.stop());
  const dbPath = join(stateDir, "relay-bot.db");
  const bot = await BenchBot.start(botOptions({ homeserverUrl: proxy.url, accessToken: botAccount.accessToken, allowedUsers: [al.userId], databasePath: dbPath }));
  const room = await al.createRoom({ invite: [botAccount.userId] });
  await waitForJoin(al, room, botAccount.userId);
  // One unmeasured answer warms up OpenCode (provider loading) and the bot's code paths.
  const warm = await promptAndObserve(al, botAccount.userId, dbPath, room, 20, 60_000);
  if (!warm.ok) throw new Error(`warm-up answer failed: ${warm.error}`);
  await sleep(1500);
  await proxy.reset();
  await bot.loopLag();
  const results: Observed[] = [];
  const probe = floorPair ? new FloorProbe(floorPair.a, floorPair.b, floorPair.room) : undefined;
  const cpu = new CpuMeter({ bot: bot.pid, opencode: stack.opencode.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid });
  for (let i = 0; i < cfg.relaySessions; i++) {
    const o = await promptAndObserve(al, botAccount.userId, dbPath, room, cfg.relayWords, 60_000, true);
    addSplits(o, await proxy.sends(), true);
    results.push(o);
    say(`  reply ${i + 1}: ack ${o.ackMs?.toFixed(0)} ms, ${o.edits} edits, finish ${o.finishMs?.toFixed(0)} ms${o.ok ? "" : ` FAILED ${o.error}`}`);
    await sleep(300);
  }
  const cpuUse = cpu.stop();
  // Only the probes sent while OpenCode was streaming one of the replies: the moments edits are sent.
  const streaming = results.flatMap((r) => {
    const m = r.marks;
    const first = m?.sessionId ? recorder.partsOf(m.sessionId)[0]?.deltas[0]?.at : undefined;
    return m?.idleAt !== undefined && first !== undefined ? [[first, m.idleAt] as const] : [];
  });
  const underLoad = ((await probe?.stop()) ?? []).filter((x) => streaming.some(([a, b]) => x.at >= a && x.at <= b));
  markLoad("relay", "end");
  await sleep(1000);
  const counts = await proxy.reset();
  const lag = await bot.loopLag();
  const mem = bot.memory();
  await bot.stop(join(logDir, "relay-bot.log"));
  const perDelta = results.flatMap((r) => r.perDeltaMs);
  const perEdit = results.flatMap((r) => r.perEditMs);
  const okCount = results.filter((r) => r.ok).length;
  const routes = routeSummary(counts);
  const tokens = cfg.relayWords * results.length;
  report.phases.relay = {
    replies: results.length,
    floorDuringRelayMs: summarize(underLoad.map((x) => x.ms)),
    floorPutDuringRelayMs: summarize(underLoad.map((x) => x.putMs)),
    lost: results.length - okCount,
    errors: results.flatMap((r) => (r.error ? [r.error] : [])),
    ackMs: summarize(results.flatMap((r) => (r.ackMs === undefined ? [] : [r.ackMs]))),
    finishMs: summarize(results.flatMap((r) => (r.finishMs === undefined ? [] : [r.finishMs]))),
    totalMs: summarize(results.flatMap((r) => (r.totalMs === undefined ? [] : [r.totalMs]))),
    deltaToVisibleMs: summarize(perDelta),
    deltaToVisibleMinusWindowMs: summarize(perDelta.map((x) => x - cfg.windowMs)),
    editPipelineMs: summarize(perEdit),
    editSplitMs: splitSummary(results.flatMap((r) => r.editSplit)),
    editIntervalMs: summarize(results.flatMap((r) => r.editIntervals)),
    alicePutMs: summarize(results.flatMap((r) => (r.alicePutMs === undefined ? [] : [r.alicePutMs]))),
    ackSplitMs: splitSummary(results.flatMap((r) => (r.ackSplit ? [r.ackSplit] : []))),
    finishSplitMs: splitSummary(results.flatMap((r) => (r.finishSplit ? [r.finishSplit] : []))),
    deltasOnlyInFinal: results.reduce((a, r) => a + r.deltasInFinal, 0),
    deltasMissing: results.reduce((a, r) => a + r.deltasMissing, 0),
    editsPerReply: summarize(results.flatMap((r) => (r.edits === undefined ? [] : [r.edits]))),
    requests: {
      total: counts.requests,
      rateLimited: counts.rateLimited,
      ...routes,
      perReply: round(counts.requests / results.length),
      writesPerReply: round(routes.writes / results.length),
      per1000Tokens: round((counts.requests / tokens) * 1000),
      writesPer1000Tokens: round((routes.writes / tokens) * 1000),
      byRoute: counts.byRoute,
    },
    bot: { loopLag: lag, rssMb: round(mem.rssMb), peakRssMb: round(mem.hwmMb) },
    cpu: cpuUse,
  };
}

// ---------------------------------------------------------------------------------------------
// start: process spawn → "bot ready", Synapse and OpenCode already up.
async function startSamples(kind: "cold" | "warm", n: number, account: RegisteredUser): Promise<Array<{ ms: number; cpuMs: number }>> {
  const out: Array<{ ms: number; cpuMs: number }> = [];
  const dbPath = join(stateDir, `start-${kind}.db`);
  for (let i = 0; i < n; i++) {
    const path = kind === "cold" ? join(stateDir, `start-cold-${i}.db`) : dbPath;
    const b = await BenchBot.start(botOptions({ homeserverUrl: hs, accessToken: account.accessToken, allowedUsers: ["@nobody:localhost"], databasePath: path }));
    out.push({ ms: b.startMs, cpuMs: b.startCpuMs });
    await b.stop();
  }
  return out;
}

if (phases.has("start")) {
  markLoad("start", "start");
  say(`start: ${cfg.startSamples} cold starts (new database) and ${cfg.startSamples} warm restarts`);
  const account = await reg("start-bot");
  await startSamples("warm", 1, account); // creates the database the warm starts reuse
  const cold = await startSamples("cold", cfg.startSamples, account);
  const warm = await startSamples("warm", cfg.startSamples, account);
  let profile: string | undefined;
  if (cfg.profile) {
    const b = await BenchBot.start(botOptions({
      homeserverUrl: hs, accessToken: account.accessToken, allowedUsers: ["@nobody:localhost"],
      databasePath: join(stateDir, "start-warm.db"), cpuProfileDir: join(profileDir, "start"),
    }));
    await b.stop();
    profile = join(profileDir, "start");
  }
  markLoad("start", "end");
  report.phases.start = {
    coldMs: summarize(cold.map((x) => x.ms)),
    warmMs: summarize(warm.map((x) => x.ms)),
    coldCpuMs: summarize(cold.map((x) => x.cpuMs)),
    warmCpuMs: summarize(warm.map((x) => x.cpuMs)),
    ...(profile ? { profileDir: profile } : {}),
  };
  say(`  cold p50 ${report.phases.start.coldMs.p50} ms, warm p50 ${report.phases.start.warmMs.p50} ms`);
}

// ---------------------------------------------------------------------------------------------
// scale: N concurrent sessions in N rooms, one bot, one OpenCode server.
if (phases.has("scale") && cfg.scaleLevels.length > 0) {
  const maxRooms = Math.max(...cfg.scaleLevels);
  say(`scale: creating ${maxRooms} rooms with the bot`);
  const al = await getAlice();
  const botAccount = await reg("scale-bot");
  const proxy = await ProxyProcess.start(hs);
  cleanups.push(() => proxy.stop());
  const dbPath = join(stateDir, "scale-bot.db");
  const opts = botOptions({
    homeserverUrl: proxy.url, accessToken: botAccount.accessToken, allowedUsers: [al.userId], databasePath: dbPath,
    ...(cfg.profile ? { cpuProfileDir: join(profileDir, "scale") } : {}),
  });
  let bot = await BenchBot.start(opts);
  const rooms = await mapLimit(Array.from({ length: maxRooms }, (_, i) => i), 8, async (i) => {
    const room = await al.createRoom({ name: `bench ${i}`, invite: [botAccount.userId] });
    await waitForJoin(al, room, botAccount.userId, 120_000);
    return room;
  });
  const idle = { rssMb: round(bot.memory().rssMb) };
  say(`  ${rooms.length} rooms joined; bot RSS ${idle.rssMb} MB`);
  const levels: ScaleLevel[] = [];
  for (const n of cfg.scaleLevels) {
    await sleep(2000);
    await bot.loopLag();
    await proxy.reset();
    const rss = new RssSampler(bot.pid);
    const cpu = new CpuMeter({ bot: bot.pid, opencode: stack.opencode.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid });
    const logFrom = bot.bot.lines.length;
    const health = new HealthProbe(`${stack.info.opencode.url}/global/health`);
    const t0 = performance.now();
    say(`  ${n} concurrent sessions of ${cfg.scaleWords} words`);
    markLoad(`scale-${n}`, "start");
    const roots: string[] = [];
    const progress = { finals: 0, lastChange: performance.now() };
    const pending = Promise.all(rooms.slice(0, n).map((room) => promptAndObserve(al, botAccount.userId, dbPath, room, cfg.scaleWords, cfg.scaleTimeoutMs, false, {
      onRoot: (root) => roots.push(root),
      onFinal: () => {
        progress.finals++;
        progress.lastChange = performance.now();
      },
    })));
    // The level's busy part ends when every reply is final, or when OpenCode has finished every
    // session and no final arrived for 10 s (the rest are lost): the lag, CPU and RSS of the
    // level cover that part, not the wait for lost replies to time out.
    await Promise.race([pending, untilSettled(n, roots, progress, dbPath)]);
    const wallMs = performance.now() - t0;
    const cpuUse = cpu.stop();
    const healthMs = await health.stop();
    markLoad(`scale-${n}`, "end");
    const lag = await bot.loopLag();
    const peak = rss.stop();
    const results = await pending;
    await sleep(1000);
    const sendList = await proxy.sends();
    for (const r of results) addSplits(r, sendList, false);
    const counts = await proxy.reset();
    const lost = results.filter((r) => !r.ok);
    const notices = rooms.slice(0, n).flatMap((room) => al.seenEvents(room))
      .filter((e) => e.sender === botAccount.userId && e.receivedAt >= t0 && isConnectionNotice(String(e.content.body ?? ""))).length;
    const late = results.filter((r) => r.ok && r.finishMs !== undefined && r.finishMs > cfg.lateMs);
    const routes = routeSummary(counts);
    const level: ScaleLevel = {
      sessions: n,
      wallMs: round(wallMs, 0),
      lost: lost.length,
      late: late.length,
      errors: countBy(lost.map((r) => r.error ?? "?")),
      connectionNotices: notices,
      opencodeHealthMs: summarize(healthMs),
      botWarnings: countBy(bot.logLinesSince(logFrom, (l) => (l.level ?? 0) >= 40).map((l) => String(l.msg))),
      cpu: cpuUse,
      rssPeakMb: round(peak),
      rssAfterMb: round(bot.memory().rssMb),
      loopLag: lag,
      ackMs: summarize(results.flatMap((r) => (r.ackMs === undefined ? [] : [r.ackMs]))),
      finishMs: summarize(results.flatMap((r) => (r.finishMs === undefined ? [] : [r.finishMs]))),
      totalMs: summarize(results.flatMap((r) => (r.totalMs === undefined ? [] : [r.totalMs]))),
      editsPerReply: summarize(results.flatMap((r) => (r.edits === undefined ? [] : [r.edits]))),
      alicePutMs: summarize(results.flatMap((r) => (r.alicePutMs === undefined ? [] : [r.alicePutMs]))),
      ackSplitMs: splitSummary(results.flatMap((r) => (r.ackSplit ? [r.ackSplit] : []))),
      finishSplitMs: splitSummary(results.flatMap((r) => (r.finishSplit ? [r.finishSplit] : []))),
      requests: { total: counts.requests, rateLimited: counts.rateLimited, ...routes, perReply: round(counts.requests / n), byRoute: counts.byRoute },
    };
    levels.push(level);
    say(`    wall ${(wallMs / 1000).toFixed(1)} s, lost ${lost.length}, late ${late.length}, RSS peak ${round(peak)} MB, loop lag p99 ${round(lag.lagP99Ms)} ms, finish p99 ${level.finishMs.p99} ms`);
  }
  // Start-up with many rooms: the same bot, restarted on its database.
  await bot.stop(join(logDir, "scale-bot.log"));
  bot = await BenchBot.start({ ...opts, cpuProfileDir: undefined });
  const restartMs = bot.startMs;
  const restartCpuMs = bot.startCpuMs;
  await bot.stop();
  report.phases.scale = { rooms: rooms.length, idleRssMb: idle.rssMb, levels, restartWithRoomsMs: round(restartMs, 0), restartWithRoomsCpuMs: round(restartCpuMs, 0), ...(cfg.profile ? { profileDir: join(profileDir, "scale") } : {}) };
}

// ---------------------------------------------------------------------------------------------
// servers: 1,000 rooms over three OpenCode servers; 20 sessions at once on each; one killed mid-stream.
if (phases.has("servers")) {
  report.phases.servers = await runServersPhase({
    cfg: {
      rooms: Math.max(3 * (2 * cfg.serversSessions + 3), cfg.serversRooms), // enough unused rooms per server for both rounds
      perServer: cfg.serversSessions,
      words: cfg.serversWords,
      outageWords: cfg.serversOutageWords,
      concurrency: cfg.serversConcurrency,
      lateMs: cfg.lateMs,
      timeoutMs: cfg.scaleTimeoutMs,
      noticeTargetMs: 5000,
    },
    stack, recorder, workDir, stateDir, logDir, reg, botOptions, say, markLoad, cleanups,
  });
}

// ---------------------------------------------------------------------------------------------
// ratelimit: Synapse with its default rate limits, one long answer.
if (phases.has("ratelimit")) {
  say(`ratelimit: second Synapse with default rate limits; one answer of ${cfg.rateWords} words at ${cfg.rateTokenMs} ms/token`);
  const rlDir = join(workDir, "ratelimit");
  mkdirSync(rlDir, { recursive: true });
  const [synapse2, model2] = await Promise.all([
    startSynapse({ cacheDir, workDir: rlDir, rateLimits: "default" }),
    startScriptedModel({ tokenDelayMs: cfg.rateTokenMs }),
  ]);
  const oc2 = await startTestOpencode({ workspaceDir: join(rlDir, "workspace"), stateDir: join(rlDir, "opencode-state"), modelBaseUrl: model2.baseUrl });
  cleanups.push(() => Promise.allSettled([oc2.stop(), synapse2.stop(), model2.close()]));
  const rec2 = new OpencodeEventRecorder(oc2.url, join(rlDir, "workspace"));
  await rec2.start();
  cleanups.push(() => rec2.stop());
  const [a2, b2] = [await synapse2.registerUser(`alice-rl`), await synapse2.registerUser(`bot-rl`)];
  const al2 = new MatrixTestUser(synapse2.baseUrl, a2);
  await al2.startSync();
  cleanups.push(() => al2.stopSync());
  const proxy = await ProxyProcess.start(synapse2.baseUrl);
  cleanups.push(() => proxy.stop());
  const dbPath = join(rlDir, "bot-state", "bot.db");
  const bot = await BenchBot.start({
    homeserverUrl: proxy.url, accessToken: b2.accessToken, allowedUsers: [a2.userId], databasePath: dbPath,
    opencodeUrl: oc2.url, workspaceDir: join(rlDir, "workspace"), editWindowMs: cfg.windowMs, extraEnv: cfg.botEnv,
  });
  const room = await al2.createRoom({ invite: [b2.userId] });
  await waitForJoin(al2, room, b2.userId);
  await proxy.reset();
  markLoad("ratelimit", "start");
  const sentAt = performance.now();
  const root = await al2.sendText(room, `!oc long ${cfg.rateWords}`);
  const w: ReplyWatch = { room, root, sentAt };
  let result: RateLimitPhase;
  try {
    const reply = await waitForReply(al2, b2.userId, w, 120_000);
    const final = await waitForFinal(al2, b2.userId, room, reply.event_id, 180_000);
    const sessionId = sessionIdOf(dbPath, root);
    const idleAt = sessionId ? rec2.sessions.get(sessionId)?.idleAt : undefined;
    const latest = await al2.latestBody(room, reply.event_id);
    await sleep(1000);
    const counts = await proxy.reset();
    const exact = splitFooter(latest.body).text === expectedWords(cfg.rateWords);
    result = {
      exact,
      lost: exact ? 0 : 1,
      edits: latest.editCount,
      streamMs: round(cfg.rateWords * cfg.rateTokenMs, 0),
      totalMs: round(final.receivedAt - sentAt, 0),
      finishMs: idleAt === undefined ? null : round(final.receivedAt - idleAt, 0),
      requests: { total: counts.requests, rateLimited: counts.rateLimited, ...routeSummary(counts), byRoute: counts.byRoute, byStatus: counts.byStatus },
      botRateLimitWarnings: bot.logLines((l) => /rate limit/i.test(String(l.msg))).length,
    };
  } catch (err) {
    result = { exact: false, lost: 1, error: String(err).split("\n")[0] };
  }
  markLoad("ratelimit", "end");
  await bot.stop(join(logDir, "ratelimit-bot.log"));
  report.phases.ratelimit = result;
}

// ---------------------------------------------------------------------------------------------
report.load = loads;
report.durationS = round((performance.now() - t00) / 1000, 0);
for (const c of cleanups.reverse()) await c().catch(() => undefined);
await recorder.stop();
await stack.stop();
if (!args.keep) rmSync(workDir, { recursive: true, force: true });
else say(`kept ${workDir}`);

report.floor = { p50: floorP50, p99: floorP99 };
report.targets = evaluateTargets(report);
const file = join(resultsDir, `bench-${report.date.replace(/[:.]/g, "-")}.json`);
const json = `${JSON.stringify(report, null, 2)}\n`;
writeFileSync(file, json);
writeFileSync(join(resultsDir, "latest.json"), json);
printReport(report);
process.stdout.write(`\nwrote ${file} and bench/results/latest.json (${report.durationS} s)\n`);
process.exit(0);
