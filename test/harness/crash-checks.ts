// What every crash test asks of a thread after the bot died and came back, as a person in the
// room reads it: no version of a reply shows less than the one before, and no prompt got two
// replies. Shared by test/e2e/crash-points*.test.ts.
import type { MatrixEvent, MatrixTestUser } from "./matrix-user.ts";

export interface ThreadView {
  user: MatrixTestUser;
  roomId: string;
  botUserId: string;
}

const rel = (e: MatrixEvent): { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } =>
  (e.content["m.relates_to"] as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } | undefined) ?? {};

/** The reply text without its footer, continuation mark or the bot's notes under it. */
export function bare(body: string): string {
  return body.replace(/\n\n— [^\n]*$/, "").replace(/\n\n_\(continued below\)_$/, "");
}

/** The bot's live replies (m.notice) in a thread, oldest first; its own ⚠️ notes left out. */
export async function liveReplies(v: ThreadView, root: string): Promise<MatrixEvent[]> {
  const events = await v.user.threadEvents(v.roomId, root);
  return events.filter((e) => e.sender === v.botUserId && e.type === "m.room.message" && e.content.msgtype === "m.notice" && !String(e.content.body).startsWith("⚠️"));
}

/** Every version of a message, oldest first (the original, then each edit by time). */
export async function versions(v: ThreadView, eventId: string, original?: MatrixEvent): Promise<string[]> {
  const first = original ?? (await v.user.getEvent(v.roomId, eventId));
  const edits = (await v.user.edits(v.roomId, eventId)).toSorted((a, b) => a.origin_server_ts - b.origin_server_ts);
  return [String(first.content.body), ...edits.map((e) => String((e.content["m.new_content"] as { body: string }).body))];
}

const hasFooter = (body: string): boolean => /\n\n— [^\n]*$/.test(body);

/**
 * Each place where a version of one of the thread's replies shows less than the one before it
 * (placeholders and retry lines aside): shorter text, or a final version (with its footer)
 * followed by one without.
 */
export async function shrinks(v: ThreadView, root: string): Promise<string[]> {
  const found: string[] = [];
  for (const reply of await liveReplies(v, root)) {
    const bodies = (await versions(v, reply.event_id, reply)).filter((t) => !bare(t).startsWith("⏳"));
    for (let i = 1; i < bodies.length; i++) {
      const [a, b] = [bodies[i - 1] as string, bodies[i] as string];
      // Every version in the message: a shrink is rare and its cause is in the whole sequence.
      if (bare(b).length < bare(a).length) found.push(`${reply.event_id}: …${bare(a).slice(-40)} → …${bare(b).slice(-40)} in ${JSON.stringify(bodies.map((x) => x.slice(0, 400)))}`);
      else if (hasFooter(a) && !hasFooter(b)) found.push(`${reply.event_id}: the final version (…${a.slice(-40)}) followed by one without its footer (…${b.slice(-40)})`);
    }
  }
  return found;
}

/** How many live replies answer each prompt of the thread (by m.in_reply_to), e.g. {"$a": 1, "$b": 1}. */
export async function repliesPerPrompt(v: ThreadView, root: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const e of await liveReplies(v, root)) {
    const to = rel(e)["m.in_reply_to"]?.event_id ?? "?";
    counts[to] = (counts[to] ?? 0) + 1;
  }
  return counts;
}

/** The latest text of each live reply of the thread that answers `prompt`, in order (a long answer's pieces). */
export async function answerPieces(v: ThreadView, root: string, prompt: string): Promise<string[]> {
  const pieces = (await liveReplies(v, root)).filter((e) => rel(e)["m.in_reply_to"]?.event_id === prompt);
  return Promise.all(pieces.map(async (p) => (await v.user.latestBody(v.roomId, p.event_id)).body));
}

/**
 * Starts the bot again (`restart` resolves once it is ready) and sends a follow-up as soon as the
 * new process is spawned, while it recovers: the follow-up's event id, and whether it went out
 * before the bot was ready.
 */
export async function sendDuringRestart(restart: () => Promise<void>, send: () => Promise<string>): Promise<{ id: string; beforeReady: boolean }> {
  let ready = false;
  const restarted = restart().then(() => {
    ready = true;
  });
  // The old process is gone, so the restart spawns the new one at once (in a microtask).
  await new Promise((r) => setTimeout(r, 0));
  const id = await send();
  const beforeReady = !ready;
  await restarted;
  return { id, beforeReady };
}

/** Whether the process dies (`exited` settles) within `ms`; the timer does not outlive the answer. */
export async function diesWithin(exited: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const died = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  clearTimeout(timer);
  return died;
}

/** How many pushes (the bot's m.text that tells who asked that the turn is over) answer each live reply of the thread. */
export async function pushesPerReply(v: ThreadView, root: string): Promise<Record<string, number>> {
  const events = await v.user.threadEvents(v.roomId, root);
  const counts: Record<string, number> = {};
  for (const e of events) {
    if (e.sender !== v.botUserId || e.type !== "m.room.message" || e.content.msgtype !== "m.text") continue;
    const to = rel(e)["m.in_reply_to"]?.event_id ?? "?";
    counts[to] = (counts[to] ?? 0) + 1;
  }
  return counts;
}
