import type { ClientContext, SessionUpdate } from "@agentclientprotocol/sdk";
import type { Logger } from "../log.ts";
import { threadMessage, type ThreadTarget } from "../matrix/content.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { SplitLiveMessage, attachAnswerFile } from "../render/split-live-message.ts";
import type { ThreadRow } from "../store/threads.ts";
import type { AcpTurnRow, AcpTurnStore } from "./store.ts";
import { AcpTurnView, clip } from "./view.ts";

export interface TurnJob {
  row: AcpTurnRow;
  thread: ThreadRow;
  /** What is sent to the agent (attributed: "[Alice] …"). */
  text: string;
  target: ThreadTarget;
}

/** A turn in flight, as the backend routes the agent's updates and permission requests to it. */
export interface ActiveTurn {
  job: TurnJob;
  view: AcpTurnView;
  onUpdate(u: SessionUpdate): void;
}

export interface TurnDeps {
  agentName: string;
  sender: MatrixSender;
  turns: AcpTurnStore;
  log: Logger;
  editWindowMs: number;
  completionNoticeAfterMs: number;
  /** The agent's connection and a session for the thread that this process knows (loaded or new). */
  session(job: TurnJob, note: (text: string) => void): Promise<{ agent: ClientContext; sessionId: string }>;
  /** Routes the session's updates to this turn while it runs. */
  attach(sessionId: string, turn: ActiveTurn | undefined): void;
  /** True once the bot is stopping: a cut-off turn is then left for the next start's reconcile. */
  stopping(): boolean;
  /** A failed prompt in words people can act on (e.g. the agent process died). */
  explain(err: unknown): string;
}

/**
 * Runs one prompt: posts the reply at once, sends `session/prompt`, grows the reply with the
 * agent's updates (coalesced edits), and ends with the exact final text and a footer.
 */
export async function runTurn(deps: TurnDeps, job: TurnJob): Promise<void> {
  const { row } = job;
  const t0 = Date.now();
  const view = new AcpTurnView(deps.agentName);
  const live = new SplitLiveMessage({
    sender: deps.sender,
    target: job.target,
    windowMs: deps.editWindowMs,
    log: deps.log,
    eventId: row.replyEventId,
    onPosted: (id) => deps.turns.setReply(row.id, id),
    attach: attachAnswerFile(deps.sender, job.target),
  });
  const notes: string[] = [];
  const render = (final: boolean): string => view.render({ final, durationMs: Date.now() - t0, note: notes.join("\n\n") || undefined });
  live.update(render(false));

  let sessionId: string | undefined;
  let cutOff = false;
  try {
    const s = await deps.session(job, (text) => {
      notes.push(text);
      live.update(render(false));
    });
    sessionId = s.sessionId;
    deps.turns.running(row.id, sessionId);
    deps.attach(sessionId, {
      job,
      view,
      onUpdate: (u) => {
        if (view.apply(u)) live.update(render(false));
      },
    });
    const res = await s.agent.request("session/prompt", { sessionId, prompt: [{ type: "text", text: job.text }] });
    view.stopReason = res.stopReason;
    // `usage` is not in the stable schema yet; OpenCode sends it.
    const usage = (res as { usage?: { totalTokens?: unknown } }).usage;
    if (typeof usage?.totalTokens === "number") view.tokens = usage.totalTokens;
  } catch (err) {
    cutOff = deps.stopping();
    view.error = cutOff ? undefined : clip(deps.explain(err), 300);
    if (cutOff) notes.push("⏹️ Cut off: the bot is restarting. The thread will say so when it is back.");
  } finally {
    if (sessionId !== undefined) deps.attach(sessionId, undefined);
  }

  const totalMs = Date.now() - t0;
  try {
    await live.finish(render(true));
  } catch (err) {
    deps.log.error({ err, roomId: row.roomId }, "could not post the final ACP reply");
  }
  // A turn cut off by the bot's own stop stays 'running': the next start closes it in its thread.
  if (!cutOff) deps.turns.finish(row.id, view.error ? "failed" : "done", { stopReason: view.stopReason, tokens: view.tokens });
  deps.log.info({ agent: deps.agentName, roomId: row.roomId, turn: row.id, sessionId, stopReason: view.stopReason, error: view.error, totalMs, edits: live.edits }, "acp turn finished");
  if (!cutOff && !view.error && totalMs >= deps.completionNoticeAfterMs) {
    const who = row.promptedBy;
    await deps.sender
      .send(row.roomId, threadMessage({ ...job.target, replyTo: live.firstId ?? job.target.replyTo }, `✅ ${pill(who).markdown} done.`, { mentions: [who] }))
      .catch((err: unknown) => deps.log.warn({ err }, "could not post the completion notice"));
  }
}
