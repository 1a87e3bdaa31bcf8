// One `!oc long N` prompt followed from Alice's side to its final version, measured against the
// OpenCode events the benchmark's own subscription received; used by the relay and scale phases.
import Database from "better-sqlite3";
import type { MatrixTestUser } from "../../test/harness/matrix-user.ts";
import type { SendRecord } from "../counting-proxy.ts";
import type { OpencodeEventRecorder } from "./oc-events.ts";
import { epoch } from "./proxy-records.ts";
import { splitFooter, versionsOf, waitForAck, waitForFinal, waitForReply, type ReplyWatch, type Version } from "./replies.ts";
import { expectedWords } from "./words.ts";

/** The bot's session for a thread, from its database (read-only). */
export function sessionIdOf(dbPath: string, root: string): string | undefined {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT session_id FROM threads WHERE root_event_id = ?").get(root) as { session_id: string } | undefined)?.session_id;
  } finally {
    db.close();
  }
}

/** One prompt's answer as Alice saw it, measured against the OpenCode events. */
export interface Observed {
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
    sentAt: number; putDoneAt: number; ackId: string; ackAt: number; replyId: string; replyAt: number; finalId: string; finalAt: number;
    idleAt?: number; sessionId?: string; versions: Version[];
  };
  /** Alice's PUT of the prompt. */
  alicePutMs?: number;
  /** Alice's PUT answered → the bot's PUT of the first sign at the proxy; its PUT; answer → Alice's sync. */
  ackSplit?: { bot: number; put: number; sync: number };
  /** Session idle → the bot's PUT of the final version; its PUT; answer → Alice's sync. */
  finishSplit?: { bot: number; put: number; sync: number };
  deltasInFinal: number;
  deltasMissing: number;
  tokens: number;
}

/** Sends `!oc long N` in `room` and follows the answer to its final version. */
export async function promptAndObserve(
  recorder: OpencodeEventRecorder, alice: MatrixTestUser, botUser: string, dbPath: string, room: string, words: number, timeoutMs: number, exactCheck = false,
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
      sentAt, putDoneAt, ackId: ack.event_id, ackAt: ack.receivedAt, replyId: reply.event_id, replyAt: reply.receivedAt, finalId: final.event_id, finalAt: final.receivedAt, versions,
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
export function addSplits(recorder: OpencodeEventRecorder, obs: Observed, sendList: SendRecord[], relay: boolean): void {
  const m = obs.marks;
  if (!m) return;
  const sends = new Map(sendList.flatMap((r) => (r.eventId ? [[r.eventId, r] as const] : [])));
  const split: Splitter = (from, eventId, seenAt) => {
    const r = sends.get(eventId);
    return r && { bot: r.start - epoch(from), put: r.end - r.start, sync: epoch(seenAt) - r.end };
  };
  obs.alicePutMs = m.putDoneAt - m.sentAt;
  // The first sign (the 👀 or the reply, whichever Alice saw first), as the ack itself is measured.
  obs.ackSplit = split(m.putDoneAt, m.ackId, m.ackAt);
  if (m.idleAt !== undefined) obs.finishSplit = split(m.idleAt, m.finalId, m.finalAt);
  if (relay && m.sessionId) relayLatencies(recorder, m.sessionId, m.versions, obs, split);
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

/**
 * Per delta: from the moment the benchmark's own OpenCode subscription received it to the first
 * version of the reply Alice saw that contains the text up to it. Per edit: from the newest
 * delta an edit carries to that edit being seen (the pipeline latency without the coalescing hold).
 */
function relayLatencies(recorder: OpencodeEventRecorder, sessionId: string, versions: Version[], obs: Observed, split: Splitter): void {
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
