// Following one prompt of the servers phase to its final version (observe), explaining one that
// never got there (diagnose), and closing a round: the bot's lag, CPU, RSS and requests (roundCommon).
import { setTimeout as sleep } from "node:timers/promises";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import type { MatrixEvent } from "../../../test/harness/matrix-user.ts";
import type { ProxyStats } from "../../counting-proxy.ts";
import type { RssSampler } from "../bot.ts";
import type { CpuMeter } from "../cpu.ts";
import { epoch } from "../proxy-records.ts";
import { splitFooter, versionsOf, waitForAck, waitForFinal, waitForReply, type ReplyWatch } from "../replies.ts";
import { round } from "../stats.ts";
import { expectedWords, wordCount } from "../words.ts";
import type { RoundCommon } from "./result.ts";
import type { ServersRig } from "./rig.ts";
import { bodyOf, dbRow, threadSession, type Split, type Turn } from "./turn.ts";

/** Fills `t` as the answer progresses (a caller may read it before the promise settles). */
export async function observe(
  rig: ServersRig, server: string, room: string, words: number,
  opts: { exact: boolean; onRoot?: (root: string) => void; onReply?: (replyId: string) => void; timeoutMs?: number },
  t: Turn = { server, room, sentAt: 0, ok: false },
): Promise<Turn> {
  const { cfg, al, botUser, dbPath, recorders } = rig;
  const timeoutMs = opts.timeoutMs ?? cfg.timeoutMs;
  t.sentAt = performance.now();
  try {
    const root = await al.sendText(room, `!oc long ${words}`);
    t.putDoneAt = performance.now();
    t.root = root;
    opts.onRoot?.(root);
    const w: ReplyWatch = { room, root, sentAt: t.sentAt };
    const ack = await waitForAck(al, botUser, w, timeoutMs);
    t.ackMs = ack.receivedAt - t.sentAt;
    t.ackId = ack.event_id;
    t.ackAt = ack.receivedAt;
    const reply = await waitForReply(al, botUser, w, timeoutMs);
    t.replyId = reply.event_id;
    t.replyAt = reply.receivedAt;
    opts.onReply?.(reply.event_id);
    const final = await waitForFinal(al, botUser, room, reply.event_id, timeoutMs);
    t.finalAt = final.receivedAt;
    t.finalId = final.event_id;
    t.totalMs = final.receivedAt - t.sentAt;
    const versions = versionsOf(al, botUser, room, reply.event_id);
    t.finalBody = versions.findLast((v) => v.final)?.body ?? "";
    t.sessionId = threadSession(dbPath, root);
    const idleAt = t.sessionId ? recorders.get(server)?.sessions.get(t.sessionId)?.idleAt : undefined;
    if (idleAt !== undefined) t.finishMs = final.receivedAt - idleAt;
    t.idleAt = idleAt;
    const last = versions.at(-1);
    t.ok = !opts.exact || (last !== undefined && last.final && splitFooter(last.body).text === expectedWords(words));
    if (!t.ok) t.error = `final text differs: ${JSON.stringify((last?.body ?? "").slice(0, 100))}`;
  } catch (err) {
    t.sessionId = t.root ? threadSession(dbPath, t.root) : undefined;
    const marks = t.sessionId ? recorders.get(server)?.sessions.get(t.sessionId) : undefined;
    const state = !t.sessionId ? "no session" : marks?.idleAt ? "session idle in OpenCode" : marks?.busyAt ? "session still busy in OpenCode" : "session never busy";
    t.error = `${(String(err).split("\n")[0] ?? "").replace(/ in ![^ ]+.*$/, "").replace(/^Error: @[^ ]+ /, "")}; ${state}`;
  }
  return t;
}

/** What became of a turn that never showed a final: the bot's rows, OpenCode's messages, Alice's last sight. */
export async function diagnose(rig: ServersRig, t: Turn): Promise<Record<string, unknown>> {
  const { dbPath, al, botUser, ocOf, wsOf } = rig;
  const turn = t.root ? dbRow<Record<string, unknown>>(dbPath, "SELECT id, status, session_id, prompt_message_id, reply_event_id, started_at, finished_at FROM turns WHERE prompt_event_id = ? ORDER BY id DESC LIMIT 1", t.root) : undefined;
  const queued = t.root ? dbRow<Record<string, unknown>>(dbPath, "SELECT id, queue_key, queued_at FROM turn_queue WHERE prompt_event_id = ?", t.root) : undefined;
  const inbox = t.root ? dbRow<Record<string, unknown>>(dbPath, "SELECT status FROM inbox WHERE event_id = ?", t.root) : undefined;
  const mine = al.seenEvents(t.room).filter((e) => e.sender === botUser && e.type === "m.room.message");
  const sessionId = (turn?.session_id as string | undefined) ?? (t.root ? threadSession(dbPath, t.root) : undefined);
  let opencode: unknown;
  if (sessionId) {
    try {
      const c = createOpencodeClient({ baseUrl: ocOf(t.server).url, directory: wsOf(t.server) });
      const msgs = (await c.session.messages({ sessionID: sessionId }, { signal: AbortSignal.timeout(10_000) })).data ?? [];
      opencode = msgs.map((m) => ({
        role: m.info.role, id: m.info.id,
        ...(m.info.role === "assistant" ? { completed: m.info.time.completed !== undefined, finish: m.info.finish, error: m.info.error?.name } : {}),
        words: m.parts.reduce((a, p) => a + (p.type === "text" ? wordCount(p.text) : 0), 0),
      }));
    } catch (err) {
      opencode = `could not ask: ${String(err)}`;
    }
  }
  return {
    ack: t.ackId !== undefined, reply: t.replyId !== undefined, sessionId, turn, queued, inbox,
    botMessages: mine.length, lastSeen: mine.length ? bodyOf(mine.at(-1) as MatrixEvent).slice(0, 160) : null, opencode,
  };
}

/** The common part of a round's result, once its turns are done; also splits each turn's ack and finish. */
export const roundCommon = async (rig: ServersRig, turns: Turn[], words: number, wallMs: number, rss: RssSampler, cpu: CpuMeter): Promise<RoundCommon> => {
  const { bot, proxy } = rig;
  const sessions = turns.length;
  const cpuUse = cpu.stop();
  const loopLag = await bot.loopLag();
  const peak = rss.stop();
  await sleep(1000);
  // Split the ack and the finish at the bot's PUTs as the proxy saw them.
  const sends = new Map((await proxy.sends()).flatMap((r) => (r.eventId ? [[r.eventId, r] as const] : [])));
  const split = (from: number, eventId: string | undefined, seenAt: number | undefined): Split | undefined => {
    const r = eventId ? sends.get(eventId) : undefined;
    return r && seenAt !== undefined ? { bot: r.start - epoch(from), put: r.end - r.start, sync: epoch(seenAt) - r.end } : undefined;
  };
  for (const t of turns) {
    if (t.putDoneAt !== undefined) t.ackSplit = split(t.putDoneAt, t.ackId, t.ackAt);
    if (t.idleAt !== undefined) t.finishSplit = split(t.idleAt, t.finalId, t.finalAt);
  }
  const counts: ProxyStats = await proxy.reset();
  return {
    sessions, words, wallMs: round(wallMs, 0), rssPeakMb: round(peak), loopLag, cpu: cpuUse,
    requests: { total: counts.requests, rateLimited: counts.rateLimited, perReply: round(counts.requests / sessions), byRoute: counts.byRoute },
  };
};
