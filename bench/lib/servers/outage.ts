// Round (b) of the servers phase: the same with longer answers, and one server (the victim)
// killed (SIGKILL) mid-stream: when its threads are told, whether the other two servers' turns
// notice anything, and what its turns become once it is started again on the same port and
// state directory.
import { setTimeout as sleep } from "node:timers/promises";
import { RssSampler } from "../bot.ts";
import { CpuMeter } from "../cpu.ts";
import { interleave } from "../lists.ts";
import type { OpencodeEventRecorder } from "../oc-events.ts";
import { epoch } from "../proxy-records.ts";
import { splitFooter, versionsOf } from "../replies.ts";
import { round, summarize } from "../stats.ts";
import { expectedWords, wordCount } from "../words.ts";
import { diagnose, observe, roundCommon } from "./observe.ts";
import type { ServersPhase } from "./result.ts";
import type { ServersRig } from "./rig.ts";
import type { ServersRooms } from "./rooms.ts";
import { bodyOf, rel, threadSession, turnSummary, type Turn } from "./turn.ts";

export async function runOutage(rig: ServersRig, takeRooms: ServersRooms["takeRooms"]): Promise<ServersPhase["outage"]> {
  const { ctx, cfg, names, victim, recorders, ocOf, al, botUser, proxy, dbPath, bot, pids } = rig;
  const { say } = ctx;
  // (b) the same with longer answers; SIGKILL one server mid-stream, start it again later.
  await sleep(2000);
  await bot.loopLag();
  await proxy.reset();
  ctx.markLoad("servers-outage", "start");
  say(`  (b) ${cfg.perServer} sessions per server, ${cfg.outageWords} words each; \`${victim}\` killed mid-stream`);
  const rss = new RssSampler(bot.pid);
  const cpu = new CpuMeter(pids());
  const victimRooms = takeRooms(victim, cfg.perServer);
  const replies = new Map<string, string>(); // victim room → reply id
  const roots = new Map<string, string>(); // victim room → prompt (thread root)
  const t0 = performance.now();
  // Filled in place: read once the victim's threads had their chance after its return.
  const victimTurns: Turn[] = victimRooms.map((room) => ({ server: victim, room, sentAt: 0, ok: false }));
  const others = names.filter((n) => n !== victim);
  const otherTurnsIn: Turn[] = others.flatMap((n) => takeRooms(n, cfg.perServer).map((room) => ({ server: n, room, sentAt: 0, ok: false })));
  // Sent interleaved (one per server in turn), as in (a).
  const pending = new Map<Turn, Promise<Turn>>();
  for (const t of interleave(names.map((n) => (n === victim ? victimTurns : otherTurnsIn.filter((o) => o.server === n))))) {
    pending.set(t, t.server === victim
      ? observe(rig, victim, t.room, cfg.outageWords, {
        exact: false, timeoutMs: 120_000, onRoot: (root) => roots.set(t.room, root), onReply: (id) => replies.set(t.room, id),
      }, t)
      : observe(rig, t.server, t.room, cfg.outageWords, { exact: true }, t));
  }
  const victimPending = victimTurns.map((t) => pending.get(t) as Promise<Turn>);
  const otherPending = Promise.all(otherTurnsIn.map((t) => pending.get(t) as Promise<Turn>));
  // Kill mid-stream, judged by the victim's OpenCode (its event stream as the benchmark sees it;
  // this round's sessions are those that turned busy after the prompts went out): as soon as all
  // of them stream at once (each has emitted ≥ 10 % of its answer, none has finished), or when
  // the first to start has emitted 75 % of its answer (it would be the first to finish), or after
  // 30 s. The scripted model sends an answer in at most 200 chunks (4 s at 20 ms a chunk, longer
  // on a busy machine) and the bot takes 20 prompts over a few seconds, so not always all are
  // mid-stream at the kill: the report says how many were busy, done, not started.
  const victimOc = ocOf(victim);
  const victimRec = recorders.get(victim) as OpencodeEventRecorder;
  const emittedBy = (sessionId: string): number => {
    let n = 0;
    for (const part of victimRec.parts.values()) if (part.sessionId === sessionId && part.field === "text") n += wordCount(part.text);
    return n;
  };
  const roundSessions = (): Array<[string, { busyAt?: number; idleAt?: number }]> =>
    [...victimRec.sessions].filter(([, m]) => m.busyAt !== undefined && m.busyAt >= t0).sort(([, a], [, b]) => (a.busyAt ?? 0) - (b.busyAt ?? 0));
  const wordsSeen = (room: string): number => {
    const id = replies.get(room);
    return id ? Math.max(0, ...versionsOf(al, botUser, room, id).map((v) => wordCount(v.body))) : 0;
  };
  const deadline = performance.now() + 30_000;
  for (;;) {
    const ss = roundSessions();
    if (ss.length >= victimRooms.length && ss.every(([id, m]) => m.idleAt === undefined && emittedBy(id) >= 0.1 * cfg.outageWords)) break;
    const first = ss[0];
    if (first && emittedBy(first[0]) >= 0.75 * cfg.outageWords) break;
    if (performance.now() > deadline) break;
    await sleep(50);
  }
  const killedAt = performance.now();
  victimOc.kill("SIGKILL");
  const atKill = new Map(roundSessions().map(([id, m]) => [id, { emitted: emittedBy(id), busy: m.idleAt === undefined }]));
  const wordsAtKill = victimRooms.map(wordsSeen);
  const busyNow = [...atKill.values()].filter((x) => x.busy);
  say(`    killed \`${victim}\` ${((killedAt - t0) / 1000).toFixed(1)} s after the prompts; ${busyNow.length} of its sessions busy (${busyNow.filter((x) => x.emitted > 0).length} with text streamed), ${atKill.size - busyNow.length} done, ${victimRooms.length - atKill.size} not started`);

  // Each victim thread: the "Lost the connection" notice, in that thread.
  const noticeTimes = await Promise.all(victimRooms.map(async (room) => {
    const root = roots.get(room);
    try {
      const e = await al.waitForRoomEvent({
        roomId: room, sender: botUser, type: "m.room.message", timeoutMs: 30_000, description: "the outage notice",
        match: (ev) => rel(ev).rel_type === "m.thread" && rel(ev).event_id === root && bodyOf(ev).startsWith(`⚠️ Lost the connection to the OpenCode server \`${victim}\``),
      });
      return { ms: e.receivedAt - killedAt, eventId: e.event_id, seenAt: e.receivedAt };
    } catch {
      return undefined;
    }
  }));
  const noticeList = noticeTimes.flatMap((x) => (x === undefined ? [] : [x.ms]));
  // Where the time went: the kill → the bot's "disconnected" log line → its notice PUT at the proxy → Alice's sync.
  const lostLine = bot.logLinesSince(0, (l) => l.msg === "OpenCode connection" && l.server === victim && l.state === "disconnected" && Number(l.time) >= epoch(killedAt) - 5)[0];
  const detectMs = lostLine ? Number(lostLine.time) - epoch(killedAt) : Number.NaN;
  const sends = new Map((await proxy.sends()).flatMap((r) => (r.eventId ? [[r.eventId, r] as const] : [])));
  const noticeSplits = noticeTimes.flatMap((x) => {
    const r = x ? sends.get(x.eventId) : undefined;
    return x && r ? [{ toPut: r.start - epoch(killedAt), put: r.end - r.start, sync: epoch(x.seenAt) - r.end }] : [];
  });
  say(`    notices: ${noticeList.length}/${victimRooms.length}, p50 ${summarize(noticeList).p50} ms, max ${summarize(noticeList).max} ms`);
  const otherTurns = await otherPending;
  const otherRooms = new Set(otherTurns.map((t) => t.room));
  const falseNotices = [...otherRooms].flatMap((room) => al.seenEvents(room))
    .filter((e) => e.sender === botUser && e.receivedAt >= killedAt && /^(⚠️ Lost the connection|✅ Reconnected)/.test(bodyOf(e))).length;
  for (const n of others) {
    const s = turnSummary(n, otherTurns.filter((t) => t.server === n), cfg.lateMs);
    say(`    ${s.server}: finish p50/p99 ${s.finishMs.p50}/${s.finishMs.p99} ms, lost ${s.lost}, late ${s.late}`);
  }

  // Down at least 10 s (past the notices and the bot's quick retries), then the same server again.
  await sleep(Math.max(0, killedAt + 10_000 - performance.now()));
  const r0 = performance.now();
  await victimOc.restart();
  const backAt = performance.now();
  const restartMs = backAt - r0;
  const downMs = backAt - killedAt;
  say(`    \`${victim}\` back after ${(downMs / 1000).toFixed(1)} s (restart ${(restartMs / 1000).toFixed(1)} s)`);
  const reconnectTimes = await Promise.all(victimRooms.map(async (room) => {
    const root = roots.get(room);
    try {
      const e = await al.waitForRoomEvent({
        roomId: room, sender: botUser, type: "m.room.message", timeoutMs: 60_000, description: "the reconnect notice",
        match: (ev) => rel(ev).rel_type === "m.thread" && rel(ev).event_id === root && bodyOf(ev).startsWith(`✅ Reconnected to the OpenCode server \`${victim}\``),
      });
      return e.receivedAt - backAt;
    } catch {
      return undefined;
    }
  }));
  // The victim's turns: final, or given up 60 s after the server came back.
  await Promise.race([Promise.all(victimPending), sleep(Math.max(0, backAt + 60_000 - performance.now()))]);
  const sessionOfRoom = victimRooms.map((room) => {
    const root = roots.get(room);
    return root ? threadSession(dbPath, root) : undefined;
  });
  const emittedAtKill = sessionOfRoom.map((id) => (id ? atKill.get(id)?.emitted ?? 0 : 0));
  const busyAtKill = sessionOfRoom.map((id) => (id ? atKill.get(id)?.busy ?? false : false));
  const victimBusyAtKill = busyAtKill.filter(Boolean).length;
  const unfinished = await Promise.all(victimTurns.filter((t) => t.finalAt === undefined).map(async (t) => ({
    room: t.room, root: t.root, ...(await diagnose(rig, t)),
  })));
  const beforeKill = victimTurns.filter((t) => t.finalAt !== undefined && t.finalAt < killedAt).length;
  const afterBack = victimTurns.flatMap((t) => (t.finalAt !== undefined && t.finalAt >= backAt ? [t.finalAt - backAt] : []));
  const finals = victimTurns.filter((t) => t.finalBody !== undefined);
  const interrupted = finals.filter((t) => /stopped before it was complete/.test(t.finalBody ?? "")).length;
  const complete = finals.filter((t) => splitFooter(t.finalBody ?? "").text === expectedWords(cfg.outageWords)).length;
  // The most words any streamed (not final) version showed, against the final's.
  const maxLive = victimTurns.map((t) => (t.replyId ? Math.max(0, ...versionsOf(al, botUser, t.room, t.replyId).filter((v) => !v.final).map((v) => wordCount(v.body))) : 0));
  const shorter = victimTurns.filter((t, i) => t.finalBody !== undefined && wordCount(t.finalBody) < (maxLive[i] ?? 0)).length;
  const finalWords = victimTurns.flatMap((t) => (t.finalBody === undefined ? [] : [wordCount(t.finalBody)]));
  const reconnectList = reconnectTimes.flatMap((x) => (x === undefined ? [] : [x]));
  say(`    after the return: ${reconnectList.length} reconnect notices, ${finals.length}/${victimRooms.length} finals (${beforeKill} before the kill), ${interrupted} marked interrupted, ${complete} complete, ${shorter} shorter than seen live`);

  // A few new prompts on the server that came back.
  const after = await Promise.all(takeRooms(victim, 3).map((room) => observe(rig, victim, room, cfg.words, { exact: true, timeoutMs: 60_000 })));
  const outageWall = performance.now() - t0;
  const outageCommon = await roundCommon(rig, [...victimTurns, ...otherTurns], cfg.outageWords, outageWall, rss, cpu);
  outageCommon.sessions = victimTurns.length + otherTurns.length;
  ctx.markLoad("servers-outage", "end");
  const othersSummary = others.map((n) => turnSummary(n, otherTurns.filter((t) => t.server === n), cfg.lateMs));
  const outage: ServersPhase["outage"] = {
    ...outageCommon,
    victim,
    perVictim: victimRooms.length,
    killAfterMs: round(killedAt - t0, 0),
    victimBusyAtKill,
    victimDoneAtKill: [...atKill.values()].filter((x) => !x.busy).length,
    victimTextAtKill: busyNow.filter((x) => x.emitted > 0).length,
    victimNotStartedAtKill: victimRooms.length - atKill.size,
    victimWordsAtKill: summarize(wordsAtKill),
    victimEmittedAtKill: summarize(emittedAtKill),
    noticeMs: summarize(noticeList),
    noticeSplitMs: {
      detect: round(detectMs, 0),
      toPut: summarize(noticeSplits.map((x) => x.toPut)),
      put: summarize(noticeSplits.map((x) => x.put)),
      sync: summarize(noticeSplits.map((x) => x.sync)),
    },
    noticesSeen: noticeList.length,
    noticesWithinTarget: noticeList.filter((x) => x <= cfg.noticeTargetMs).length,
    falseNotices,
    others: othersSummary,
    othersLost: othersSummary.reduce((a, s) => a + s.lost, 0),
    othersLate: othersSummary.reduce((a, s) => a + s.late, 0),
    downMs: round(downMs, 0),
    restartMs: round(restartMs, 0),
    reconnectNoticeMs: summarize(reconnectList),
    reconnectNotices: reconnectList.length,
    victimFinalMs: summarize(afterBack),
    victimFinals: finals.length,
    victimFinishedBeforeKill: beforeKill,
    victimInterruptedNote: interrupted,
    victimComplete: complete,
    victimFinalShorterThanSeen: shorter,
    victimFinalWords: summarize(finalWords),
    victimThreads: victimTurns.map((t, i) => ({
      emittedAtKill: emittedAtKill[i] ?? 0,
      shownAtKill: wordsAtKill[i] ?? 0,
      busyAtKill: busyAtKill[i] ?? false,
      noticeMs: noticeTimes[i] ? round(noticeTimes[i].ms, 0) : null,
      reconnectMs: reconnectTimes[i] === undefined ? null : round(reconnectTimes[i], 0),
      finalAfterBackMs: t.finalAt === undefined ? null : round(t.finalAt - backAt, 0),
      finalWords: t.finalBody === undefined ? null : wordCount(t.finalBody),
      interrupted: /stopped before it was complete/.test(t.finalBody ?? ""),
      finalStart: t.finalBody === undefined ? null : t.finalBody.slice(0, 100),
    })),
    victimUnfinished: unfinished,
    botConnectionLog: bot.logLinesSince(0, (l) => l.server === victim && Number(l.time) >= epoch(killedAt) - 5 && /OpenCode (connection|event stream)/.test(String(l.msg)))
      .map((l) => ({ atMs: round(Number(l.time) - epoch(killedAt), 0), msg: String(l.msg), state: l.state, attempt: l.attempt, delayMs: l.delayMs, error: l.error })),
    afterReturn: { prompts: after.length, ok: after.filter((t) => t.ok).length, totalMs: summarize(after.flatMap((t) => (t.totalMs === undefined ? [] : [t.totalMs]))) },
  };
  return outage;
}
