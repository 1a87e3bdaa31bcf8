// The benchmark's result document and the table printed from it.
import type { LoopLag } from "./bot.ts";
import type { CpuUse } from "./cpu.ts";
import type { ServersPhase } from "./servers/result.ts";
import type { Summary } from "./stats.ts";

export type { ServersPhase } from "./servers/result.ts";

interface Requests {
  total: number;
  rateLimited: number;
  writes: number;
  syncs: number;
  other: number;
  byRoute: Record<string, number>;
}

/** Where the time of one bot message goes: in the bot (until its PUT reaches the proxy), in Synapse's PUT, in delivery to Alice's sync. */
export interface Split {
  bot: Summary;
  put: Summary;
  sync: Summary;
}

export interface RelayPhase {
  replies: number;
  /** The edit floor measured by a plain client while the bot was streaming (same moment, same load). */
  floorDuringRelayMs: Summary;
  /** The PUT part of it. */
  floorPutDuringRelayMs: Summary;
  lost: number;
  errors: string[];
  ackMs: Summary;
  finishMs: Summary;
  totalMs: Summary;
  deltaToVisibleMs: Summary;
  deltaToVisibleMinusWindowMs: Summary;
  editPipelineMs: Summary;
  editSplitMs: Split;
  /** Start-to-start time between consecutive streamed edits of a reply. */
  editIntervalMs: Summary;
  alicePutMs: Summary;
  ackSplitMs: Split;
  finishSplitMs: Split;
  deltasOnlyInFinal: number;
  deltasMissing: number;
  editsPerReply: Summary;
  requests: Requests & { perReply: number; writesPerReply: number; per1000Tokens: number; writesPer1000Tokens: number };
  bot: { loopLag: LoopLag; rssMb: number; peakRssMb: number };
  cpu: CpuUse;
}

export interface ScaleLevel {
  sessions: number;
  wallMs: number;
  lost: number;
  late: number;
  errors: Record<string, number>;
  botWarnings: Record<string, number>;
  /** "Lost the connection" / "Reconnected" notices the bot posted into the threads. */
  connectionNotices: number;
  /** Latency of OpenCode's GET /global/health during the level (the bot's health check gives up after 2 s). */
  opencodeHealthMs: Summary;
  cpu: CpuUse;
  rssPeakMb: number;
  rssAfterMb: number;
  loopLag: LoopLag;
  ackMs: Summary;
  finishMs: Summary;
  totalMs: Summary;
  editsPerReply: Summary;
  alicePutMs: Summary;
  ackSplitMs: Split;
  finishSplitMs: Split;
  requests: Requests & { perReply: number };
}

export interface RateLimitPhase {
  exact: boolean;
  lost: number;
  error?: string;
  edits?: number;
  streamMs?: number;
  totalMs?: number;
  finishMs?: number | null;
  requests?: Requests & { byStatus: Record<string, number> };
  botRateLimitWarnings?: number;
}

export interface Report {
  date: string;
  /** The commit measured ("(src modified)" when src/ had uncommitted changes). */
  commit: string;
  machine: { cpus: number; cpuModel: string; memGb: number; node: string; synapse: string; platform: string };
  config: { windowMs: number; tokenMs: number; relayWords: number; scaleWords: number; rateWords: number; rateTokenMs: number; lateMs: number } & Record<string, unknown>;
  phases: {
    floor?: { roundTripMs: Summary; putMs: Summary; editRoundTripMs: Summary; editPutMs: Summary; viaCountingProxyMs: Summary };
    relay?: RelayPhase;
    start?: { coldMs: Summary; warmMs: Summary; coldCpuMs: Summary; warmCpuMs: Summary; firstMs?: Summary; firstCpuMs?: Summary; profileDir?: string };
    scale?: { rooms: number; idleRssMb: number; levels: ScaleLevel[]; restartWithRoomsMs: number; restartWithRoomsCpuMs: number; profileDir?: string };
    servers?: ServersPhase;
    ratelimit?: RateLimitPhase;
  };
  load?: Array<{ phase: string; at: string; load1: number }>;
  targets?: Array<{ target: string; value: string; met: boolean | null }>;
  durationS?: number;
  floor?: { p50: number; p99: number };
}

const ms = (v: number | undefined | null): string => (v === undefined || v === null || Number.isNaN(v) ? "–" : `${Math.round(v)} ms`);
const pair = (s: Summary | undefined): [string, string] => [ms(s?.p50), ms(s?.p99)];
const stallText = (l: LoopLag): string =>
  `${l.stalls} stalls >50 ms (${l.stallMs} ms, ${l.stallMs > 0 ? Math.round((100 * l.stallCpuMs) / l.stallMs) : 0}% on CPU)`;
const round2 = (v: number): number => Math.round(v * 100) / 100;
const num = (v: number): string => (Number.isNaN(v) ? "–" : String(Math.round(v)));
const splitCells = (s: Split): [string, string] => [
  `${num(s.bot.p50)} / ${num(s.put.p50)} / ${num(s.sync.p50)} ms`,
  `${num(s.bot.p99)} / ${num(s.put.p99)} / ${num(s.sync.p99)} ms`,
];

/** Evaluates the targets against the measured numbers. */
export function evaluateTargets(r: Report): NonNullable<Report["targets"]> {
  const out: NonNullable<Report["targets"]> = [];
  const floor = r.phases.floor?.roundTripMs;
  const relay = r.phases.relay;
  const w = r.config.windowMs;
  if (floor && relay) {
    const p = relay.editPipelineMs;
    const ratio50 = p.p50 / floor.p50;
    const ratio99 = p.p99 / floor.p99;
    out.push({
      target: "relay overhead ≤ 1.5× floor (edit pipeline, p50 and p99)",
      value: `${ratio50.toFixed(2)}× / ${ratio99.toFixed(2)}×`,
      met: ratio50 <= 1.5 && ratio99 <= 1.5,
    });
    const g = relay.floorDuringRelayMs;
    out.push({
      target: "relay overhead ≤ 1.5× floor measured during the relay (edit pipeline, p50 and p99)",
      value: `${(p.p50 / g.p50).toFixed(2)}× / ${(p.p99 / g.p99).toFixed(2)}×`,
      met: p.p50 / g.p50 <= 1.5 && p.p99 / g.p99 <= 1.5,
    });
    const d = relay.deltaToVisibleMinusWindowMs;
    out.push({
      target: "relay overhead ≤ 1.5× floor (per delta − window, p99)",
      value: `${ms(d.p99)} = ${(d.p99 / floor.p99).toFixed(2)}× floor p99`,
      met: d.p99 <= 1.5 * floor.p99,
    });
    out.push({
      target: `finish p99 ≤ floor p99 + window (${Math.round(floor.p99 + w)} ms)`,
      value: ms(relay.finishMs.p99),
      met: relay.finishMs.p99 <= floor.p99 + w,
    });
  }
  const scale = r.phases.scale;
  const top = scale?.levels.at(-1);
  if (top) {
    out.push({ target: `${top.sessions} sessions: bot RSS ≤ 250 MB`, value: `${top.rssPeakMb} MB`, met: top.rssPeakMb <= 250 });
    out.push({ target: `${top.sessions} sessions: loop lag p99 ≤ 50 ms`, value: ms(top.loopLag.lagP99Ms), met: top.loopLag.lagP99Ms <= 50 });
  }
  const start = r.phases.start;
  if (start) {
    out.push({
      target: "start ≤ 0.5 s (new database and restart, p50)",
      value: `${ms(start.coldMs.p50)} / ${ms(start.warmMs.p50)} (CPU ${ms(start.coldCpuMs.p50)} / ${ms(start.warmCpuMs.p50)})`,
      met: start.coldMs.p50 <= 500 && start.warmMs.p50 <= 500,
    });
  }
  const sv = r.phases.servers;
  if (sv) {
    const o = sv.outage;
    out.push({ target: `${sv.rooms} rooms, ${sv.burst.sessions} sessions on ${sv.servers.length} servers: bot RSS ≤ 250 MB`, value: `${sv.burst.rssPeakMb} MB`, met: sv.burst.rssPeakMb <= 250 });
    out.push({ target: `${sv.rooms} rooms, ${sv.burst.sessions} sessions on ${sv.servers.length} servers: loop lag p99 ≤ 50 ms`, value: ms(sv.burst.loopLag.lagP99Ms), met: sv.burst.loopLag.lagP99Ms <= 50 });
    out.push({
      target: "a killed server's threads told within 5 s",
      value: `${o.noticesWithinTarget}/${o.perVictim} within 5 s, max ${ms(o.noticeMs.max)}`,
      met: o.noticesWithinTarget === o.perVictim,
    });
    out.push({ target: "the other servers' turns unaffected (0 lost, 0 late, no notices)", value: `lost ${o.othersLost}, late ${o.othersLate}, ${o.falseNotices} notices`, met: o.othersLost + o.othersLate + o.falseNotices === 0 });
    out.push({
      target: "the killed server's turns finished after it returns",
      value: `${o.victimFinals}/${o.perVictim} final (${o.victimInterruptedNote} marked interrupted, ${o.victimFinalShorterThanSeen} shorter than shown live)`,
      met: o.victimFinals === o.perVictim && o.victimFinalShorterThanSeen === 0,
    });
  }
  const lost = (relay?.lost ?? 0) + (scale?.levels.reduce((a, l) => a + l.lost + l.late, 0) ?? 0) + (r.phases.ratelimit?.lost ?? 0)
    + (sv ? sv.burst.lost + sv.burst.late + sv.outage.othersLost + sv.outage.othersLate : 0);
  out.push({ target: "0 lost or late final states everywhere", value: String(lost), met: lost === 0 });
  return out;
}

function serversRows(x: ServersPhase): string[][] {
  const rows: string[][] = [];
  const b = x.burst;
  const o = x.outage;
  const n = x.servers.length;
  const s1 = (v: number): string => `${(v / 1000).toFixed(1)} s`;
  rows.push([
    `servers: ${x.rooms} rooms on ${n} servers, idle`, ms(x.idleLoopLag.lagP50Ms), ms(x.idleLoopLag.lagP99Ms),
    `bot RSS ${x.idleRssMb} MB; rooms created and joined in ${s1(x.createMs)} (${x.concurrency} at a time), ${Object.values(x.roomsPerServer).reduce((a, v) => a + v, 0) - (x.roomsPerServer.default ?? 0)} bound with \`!oc server\` in ${s1(x.bindMs)} (answer ${ms(x.bindCommandMs.p50)} / ${ms(x.bindCommandMs.p99)}, ${x.bindFailures} failed); ${x.setupRequests.perRoom} bot requests per room`,
  ]);
  rows.push([
    `servers ${b.sessions} sessions (${b.sessions / n} per server): loop lag`, ms(b.loopLag.lagP50Ms), ms(b.loopLag.lagP99Ms),
    `RSS peak ${b.rssPeakMb} MB; lost ${b.lost}, late ${b.late}; ${b.words} words each, all final within ${s1(b.wallMs)}; ${stallText(b.loopLag)}; ${b.requests.perReply} req/reply, ${b.requests.rateLimited} 429s`,
  ]);
  for (const t of b.perServer) {
    rows.push([`  ${t.server}: ack / finish`, `${ms(t.ackMs.p50)} / ${ms(t.finishMs.p50)}`, `${ms(t.ackMs.p99)} / ${ms(t.finishMs.p99)}`, `n=${t.n}; lost ${t.lost}, late ${t.late}`]);
    rows.push(["    ack split: bot / PUT / sync", ...splitCells(t.ackSplitMs), "bot = Alice's PUT done → the bot's PUT at the proxy"]);
    rows.push(["    finish split: bot / PUT / sync", ...splitCells(t.finishSplitMs), "bot = idle → the bot's PUT at the proxy"]);
  }
  rows.push([
    `servers outage: \`${o.victim}\` killed, its threads told`, ms(o.noticeMs.p50), ms(o.noticeMs.p99),
    `${o.noticesSeen}/${o.perVictim} notices, ${o.noticesWithinTarget} within 5 s (max ${ms(o.noticeMs.max)}); killed ${s1(o.killAfterMs)} after the prompts: ${o.victimBusyAtKill} of its sessions busy (${o.victimTextAtKill} with text streamed), ${o.victimDoneAtKill} done, ${o.victimNotStartedAtKill} not started (p50: ${Math.round(o.victimEmittedAtKill.p50)} of ${o.words} words emitted, ${Math.round(o.victimWordsAtKill.p50)} shown); ${o.falseNotices} notices elsewhere`,
  ]);
  const ns = o.noticeSplitMs;
  rows.push([
    "    notice split: to its PUT / PUT / sync", `${num(ns.toPut.p50)} / ${num(ns.put.p50)} / ${num(ns.sync.p50)} ms`, `${num(ns.toPut.p99)} / ${num(ns.put.p99)} / ${num(ns.sync.p99)} ms`,
    `the bot logged the server lost ${ms(ns.detect)} after the kill; it tells as soon as a reconnect finds nothing listening, else after 3 s (a shorter outage is not announced)`,
  ]);
  for (const t of o.others) {
    rows.push([`  ${t.server} meanwhile: ack / finish`, `${ms(t.ackMs.p50)} / ${ms(t.finishMs.p50)}`, `${ms(t.ackMs.p99)} / ${ms(t.finishMs.p99)}`, `n=${t.n}; lost ${t.lost}, late ${t.late}`]);
  }
  rows.push([
    `  \`${o.victim}\` back: reconnect notice / final`, `${ms(o.reconnectNoticeMs.p50)} / ${ms(o.victimFinalMs.p50)}`, `${ms(o.reconnectNoticeMs.p99)} / ${ms(o.victimFinalMs.p99)}`,
    `from the restarted server ready (down ${s1(o.downMs)}, its start ${s1(o.restartMs)}): ${o.reconnectNotices} reconnect notices, ${o.victimFinals}/${o.perVictim} finals (${o.victimFinishedBeforeKill} before the kill), ${o.victimInterruptedNote} marked interrupted, ${o.victimComplete} complete, ${o.victimFinalShorterThanSeen} shorter than shown live (final words p50 ${Math.round(o.victimFinalWords.p50)}); new prompts there ${o.afterReturn.ok}/${o.afterReturn.prompts} ok`,
  ]);
  const tries = o.botConnectionLog.filter((l) => l.msg.startsWith("OpenCode event stream lost")).map((l) => `${(l.atMs / 1000).toFixed(1)}`);
  const back = o.botConnectionLog.find((l) => l.state === "connected");
  rows.push([
    "    the bot's tries (s after the kill)", tries.join(", "), back ? `connected ${(back.atMs / 1000).toFixed(1)}` : "–",
    `the server was ready again ${s1(o.downMs)} after the kill; each try first asks /global/health (8 s timeout, 3 s after a failure), then waits (1, 2, 4 s, then every 5 s)`,
  ]);
  rows.push([`  bot during the outage round: loop lag`, ms(o.loopLag.lagP50Ms), ms(o.loopLag.lagP99Ms), `RSS peak ${o.rssPeakMb} MB; ${stallText(o.loopLag)}`]);
  return rows;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? "")].length))) ?? [];
  const line = (r: string[]): string => `| ${r.map((c, i) => c + " ".repeat((widths[i] ?? 0) - [...c].length)).join(" | ")} |`;
  return [line(rows[0] ?? []), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
}

/** The results as markdown tables (printed, and pasted into the README). */
export function renderReport(r: Report): string {
  const rows: string[][] = [["metric", "p50", "p99", "notes"]];
  const p = r.phases;
  const w = r.config.windowMs;
  if (p.floor) {
    rows.push(["floor: plain send → 2nd client's sync", ...pair(p.floor.roundTripMs), `n=${p.floor.roundTripMs.n}; its PUT ${ms(p.floor.putMs.p50)} / ${ms(p.floor.putMs.p99)}`]);
    rows.push(["  same, sender via counting proxy", ...pair(p.floor.viaCountingProxyMs), "what the proxy adds"]);
    rows.push(["  same, an edit shaped like the bot's", ...pair(p.floor.editRoundTripMs), `its PUT ${ms(p.floor.editPutMs.p50)} / ${ms(p.floor.editPutMs.p99)}`]);
  }
  if (p.relay) {
    const x = p.relay;
    rows.push(["floor during streaming (edit, plain client)", ...pair(x.floorDuringRelayMs), `n=${x.floorDuringRelayMs.n}, sent while OpenCode streamed; its PUT ${ms(x.floorPutDuringRelayMs.p50)} / ${ms(x.floorPutDuringRelayMs.p99)}`]);
    rows.push(["ack: prompt sent → first bot sign seen", ...pair(x.ackMs), `n=${x.ackMs.n}`]);
    rows.push(["  split: in the bot / PUT / to Alice's sync", ...splitCells(x.ackSplitMs), `bot = Alice's PUT done → bot's PUT at proxy; Alice's PUT ${ms(x.alicePutMs.p50)}`]);
    rows.push([`relay: delta → edit visible`, ...pair(x.deltaToVisibleMs), `n=${x.deltaToVisibleMs.n} deltas, window ${w} ms`]);
    rows.push([`relay overhead: the same − window`, ...pair(x.deltaToVisibleMinusWindowMs), `max ${ms(x.deltaToVisibleMinusWindowMs.max)}`]);
    const f = p.floor?.roundTripMs;
    const ratio = f ? `${(x.editPipelineMs.p50 / f.p50).toFixed(2)}× / ${(x.editPipelineMs.p99 / f.p99).toFixed(2)}× floor` : "";
    const g = x.floorDuringRelayMs;
    const ratioLoaded = `${(x.editPipelineMs.p50 / g.p50).toFixed(2)}× / ${(x.editPipelineMs.p99 / g.p99).toFixed(2)}× floor during relay`;
    rows.push(["relay pipeline: newest delta in edit → visible", ...pair(x.editPipelineMs), `n=${x.editPipelineMs.n} edits; ${ratio}; ${ratioLoaded}`]);
    rows.push(["  split: in the bot / PUT / to Alice's sync", ...splitCells(x.editSplitMs), "bot = newest delta → PUT at proxy"]);
    rows.push(["  time between two edits (start to start)", ...pair(x.editIntervalMs), `window ${w} ms`]);
    rows.push(["finish: session idle → final visible", ...pair(x.finishMs), `n=${x.finishMs.n}`]);
    rows.push(["  split: in the bot / PUT / to Alice's sync", ...splitCells(x.finishSplitMs), "bot = idle → PUT at proxy"]);
    rows.push(["reply: prompt sent → final visible", ...pair(x.totalMs), `${r.config.relayWords} words at ${r.config.tokenMs} ms`]);
    rows.push([
      "cost: homeserver requests per reply",
      `${x.requests.perReply}`, "",
      `${x.requests.writesPerReply} writes; ${x.editsPerReply.p50} edits/reply; ${x.requests.per1000Tokens} req (${x.requests.writesPer1000Tokens} writes) per 1,000 tokens`,
    ]);
    rows.push(["bot during relay: loop lag", ms(x.bot.loopLag.lagP50Ms), ms(x.bot.loopLag.lagP99Ms), `RSS ${x.bot.rssMb} MB (peak ${x.bot.peakRssMb}); ${stallText(x.bot.loopLag)}`]);
  }
  if (p.scale) {
    for (const l of p.scale.levels) {
      rows.push([
        `scale ${l.sessions} sessions: loop lag`, ms(l.loopLag.lagP50Ms), ms(l.loopLag.lagP99Ms),
        `RSS peak ${l.rssPeakMb} MB; lost ${l.lost}, late ${l.late}; max lag ${ms(l.loopLag.lagMaxMs)}; ${stallText(l.loopLag)}; ${l.connectionNotices} outage notices`,
      ]);
      rows.push([`  ${l.sessions} sessions: ack / finish`, `${ms(l.ackMs.p50)} / ${ms(l.finishMs.p50)}`, `${ms(l.ackMs.p99)} / ${ms(l.finishMs.p99)}`,
        `${l.sessions - l.lost} final within ${(l.wallMs / 1000).toFixed(1)} s; ${l.requests.perReply} req/reply, ${l.requests.rateLimited} 429s`]);
      rows.push(["    ack split: bot / PUT / sync", ...splitCells(l.ackSplitMs), `Alice's PUT ${ms(l.alicePutMs.p50)} / ${ms(l.alicePutMs.p99)}`]);
      rows.push(["    finish split: bot / PUT / sync", ...splitCells(l.finishSplitMs), ""]);
      rows.push(["    OpenCode GET /global/health", ...pair(l.opencodeHealthMs), `max ${ms(l.opencodeHealthMs.max)} (the bot's check times out at 2 s)`]);
    }
  }
  if (p.servers) rows.push(...serversRows(p.servers));
  if (p.start) {
    rows.push(["start: spawn → ready (new database)", ...pair(p.start.coldMs), `n=${p.start.coldMs.n}; CPU used ${ms(p.start.coldCpuMs.p50)} / ${ms(p.start.coldCpuMs.p99)}`]);
    rows.push(["start: spawn → ready (restart)", ...pair(p.start.warmMs), `n=${p.start.warmMs.n}; CPU used ${ms(p.start.warmCpuMs.p50)} / ${ms(p.start.warmCpuMs.p99)}`]);
    if (p.start.firstMs && p.start.firstCpuMs) rows.push(["start: first after a build (no code cache)", ...pair(p.start.firstMs), `n=${p.start.firstMs.n}; CPU used ${ms(p.start.firstCpuMs.p50)} / ${ms(p.start.firstCpuMs.p99)}`]);
  }
  if (p.scale) rows.push([`start: restart with ${p.scale.rooms} rooms`, ms(p.scale.restartWithRoomsMs), "", `n=1; CPU used ${ms(p.scale.restartWithRoomsCpuMs)}`]);
  if (p.servers) rows.push([`start: restart with ${p.servers.rooms} rooms, ${p.servers.servers.length} servers`, ms(p.servers.restartWithRoomsMs), "", `n=1; CPU used ${ms(p.servers.restartWithRoomsCpuMs)}`]);
  if (p.ratelimit) {
    const x = p.ratelimit;
    rows.push([
      "default rate limits: one answer",
      ms(x.totalMs), "",
      x.error ?? `${x.requests?.total} requests (${x.requests?.writes} writes), ${x.requests?.rateLimited} × 429, ${x.edits} edits, final ${x.exact ? "exact" : "WRONG"}; idle → final ${ms(x.finishMs)}`,
    ]);
  }
  const cpuRows: string[][] = [["CPU seconds (2 cores)", "wall", "bot", "OpenCode", "Synapse", "bench+proxy", "others on the machine"]];
  const cpuRow = (name: string, c: CpuUse | undefined): void => {
    if (!c) return;
    const b = c.byProcess;
    const oc = round2(Object.entries(b).filter(([k, v]) => (k === "opencode" || k.startsWith("opencode-")) && !Number.isNaN(v)).reduce((x, [, v]) => x + v, 0));
    cpuRows.push([name, `${c.wallS} s`, `${b.bot}`, `${oc}`, `${b.synapse}`, `${round2((b.bench ?? 0) + (b.proxy ?? 0))}`, `${c.othersS}`]);
  };
  cpuRow("relay", p.relay?.cpu);
  for (const l of p.scale?.levels ?? []) cpuRow(`scale ${l.sessions}`, l.cpu);
  cpuRow(`servers: creating and binding ${p.servers?.rooms ?? ""} rooms`, p.servers?.setupCpu);
  cpuRow(`servers ${p.servers?.burst.sessions ?? ""}`, p.servers?.burst.cpu);
  cpuRow("servers outage (OpenCode: the two not killed)", p.servers?.outage.cpu);
  const targets = (r.targets ?? []).map((t) => [t.target, t.value, t.met === null ? "?" : t.met ? "met" : "MISSED"]);
  const cpuTable = cpuRows.length > 1 ? `\n\n${table(cpuRows)}` : "";
  return `${table(rows)}${cpuTable}\n\n${table([["target", "measured", ""], ...targets])}`;
}

export function printReport(r: Report): void {
  const m = r.machine;
  process.stdout.write(`\nBenchmark ${r.date}, commit ${r.commit} — ${m.cpus} cores (${m.cpuModel}), ${m.memGb} GB, Node ${m.node}, Synapse ${m.synapse}\n\n`);
  process.stdout.write(`${renderReport(r)}\n`);
  const loads = (r.load ?? []).map((l) => `${l.phase} ${l.at} ${l.load1}`).join(", ");
  if (loads) process.stdout.write(`\nload average (1 min; ${m.cpus} cores): ${loads}\n`);
}
