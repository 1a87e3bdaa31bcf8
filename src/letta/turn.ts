import { APIError } from "@letta-ai/letta-client";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import { crashPoint } from "../process/crash-point.ts";
import type { LiveTurn, TurnEngine } from "../turns/engine.ts";
import { clip } from "../turns/render.ts";
import { describeLettaError, type LettaApi, type LettaStream, type RetryNotice } from "./api.ts";
import type { ApprovalCall, ApprovalRow } from "./approval-store.ts";
import { LettaTranslator, type PendingApproval } from "./events.ts";
import type { LettaTurnRow, LettaTurnStore } from "./store.ts";

export interface TurnJob {
  row: LettaTurnRow;
  agentId: string;
  agentName: string;
  /** What is sent to the agent (attributed: "[Alice] …"). */
  text: string;
  target: ThreadTarget;
  title?: string | undefined;
  /** Set for the turn that answers the agent's approval request: the answer is sent instead of `text`. */
  approval?: { calls: ApprovalCall[]; approve: boolean; reason?: string | undefined } | undefined;
}

/** Asks the thread when a turn stops for approval (src/letta/approvals.ts). */
export interface ApprovalAsker {
  record(t: { agentId: string; agentName: string; roomId: string; rootEventId: string; askedOf: string; replyEventId: string | null }, pending: PendingApproval): ApprovalRow;
  ask(row: ApprovalRow): Promise<void>;
}

export interface TurnDeps {
  api: LettaApi;
  engine: TurnEngine;
  turns: LettaTurnStore;
  log: Logger;
  timeoutMs: number;
  approvals?: ApprovalAsker | undefined;
}

export interface TurnOutcome {
  status: "done" | "failed";
  /** ms from sending to the first agent output. */
  firstOutputMs: number | undefined;
  totalMs: number;
  replyId: string | null;
}

/** The turn's live reply, recorded under the turn: a restarted bot edits the same pieces and never shows less. */
function openReply(deps: TurnDeps, job: TurnJob): LiveTurn {
  return deps.engine.open({
    target: job.target,
    replyEventId: job.row.replyEventId,
    onPosted: (id) => deps.turns.setReply(job.row.id, id),
    working: `⏳ _${job.agentName} is thinking…_`,
    promptedBy: job.row.promptedBy,
    title: job.title,
    persist: { backend: "letta", turnId: job.row.id },
  });
}

/**
 * Runs one turn: the engine's live reply shows at once; the message goes out (retried only
 * while Letta provably does not have it); the answer stream becomes turn events. A failure
 * before the answer began is one line. `sentAt`: the turn is recovered after a restart, and its
 * message went out then: its answer is read from Letta's run, and it is sent (again) only when
 * Letta never had it.
 */
export async function runTurn(deps: TurnDeps, job: TurnJob, stop: AbortSignal, recovered?: { sentAt: number | undefined }): Promise<TurnOutcome> {
  const { row } = job;
  const tr = new LettaTranslator(job.agentName);
  const turn = openReply(deps, job);
  // A recovered turn's reply shows what it showed before the restart (perhaps its final text)
  // until its answer is read: shown again now, it would lose its footer for a while.
  if (!recovered || row.replyEventId === null) turn.show();
  const answer = job.approval;
  if (answer) turn.push(...tr.answered(answer.calls, answer.approve));
  if (recovered?.sentAt === undefined && recovered) deps.log.info({ agentId: job.agentId, turn: row.id }, "a cut-off turn's message was never sent; sending it now");
  if (recovered?.sentAt !== undefined) {
    const found = await deps.api.findMessageRun(job.agentId, row.otid, recovered.sentAt, { signal: stop });
    deps.log.info({ agentId: job.agentId, turn: row.id, found: found.kind, runId: found.kind === "found" ? found.run.id : undefined }, "a cut-off turn's message was sent before the restart: its run looked up");
    if (found.kind !== "absent") {
      const events = found.kind === "found" ? tr.record(found.run) : tr.fail(`the bot restarted after sending this message and cannot tell whether Letta has it (${found.why}); it was not sent again.`);
      // Folded in without an intermediate version: the reply may already show its final text,
      // which a version without the footer would take back; the final text follows at once.
      for (const e of [...events, ...tr.end()]) turn.state.apply(e);
      return finishTurn(deps, job, turn, tr, {});
    }
    deps.log.info({ agentId: job.agentId, turn: row.id }, "the message of a cut-off turn never reached Letta; sending it now");
  }

  const abort = new AbortController();
  const onStop = (): void => abort.abort();
  stop.addEventListener("abort", onStop, { once: true });
  let firstOutputAt: number | undefined;
  let idle = false;
  let brokeOff: string | undefined;
  let stream: LettaStream | undefined;
  const onRetry = (n: RetryNotice): void => {
    turn.push({ type: "retry", attempt: n.attempt, of: n.of, nextInMs: n.delayMs, message: describeLettaError(n.error, deps.api.baseUrl) });
  };
  let acceptedMs: number | undefined;
  try {
    const input = answer ? { toolCallIds: answer.calls.map((c) => c.id), approve: answer.approve, reason: answer.reason } : job.text;
    // Recorded before it goes: after a crash, a turn without this mark provably never reached Letta.
    deps.turns.markSent(row.id);
    crashPoint("sent-mark");
    stream = await deps.api.sendStreaming(job.agentId, input, row.otid, { signal: abort.signal, onRetry });
    acceptedMs = Date.now() - turn.startedAt;
    crashPoint("prompt-sent");
  } catch (err) {
    turn.push({ type: "rejected", text: stop.aborted ? "⏹️ Not sent: the bot is shutting down." : `⚠️ ${describeLettaError(err, deps.api.baseUrl)}` });
  }

  if (stream) {
    let lastEventAt = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - lastEventAt > deps.timeoutMs) {
        idle = true;
        abort.abort();
      }
    }, Math.min(1000, deps.timeoutMs));
    try {
      for await (const event of stream) {
        lastEventAt = Date.now();
        const events = tr.events(event);
        if (events.length === 0) continue;
        turn.push(...events);
        if (firstOutputAt === undefined && turn.state.hasOutput) firstOutputAt = Date.now();
      }
    } catch (err) {
      // An error event from Letta (the model failed) or a connection that broke mid-answer.
      if (err instanceof APIError && err.status === undefined) turn.push(...tr.fail(describeLettaError(err, deps.api.baseUrl)));
      else if (!(err instanceof APIError)) brokeOff = (err as Error).message;
    } finally {
      clearInterval(watchdog);
    }
    if (tr.error === undefined && tr.stopReason === undefined) {
      // The stream ended without Letta saying why: we stopped it, or it broke off. Never re-sent.
      if (idle) turn.push(...tr.fail(`no data from Letta for ${Math.round(deps.timeoutMs / 1000)} s; the message was not sent again.`));
      else if (stop.aborted) turn.push(...tr.fail("the bot stopped while the answer was streaming; Letta may still finish it."));
      else turn.push(...tr.fail(`the connection to Letta broke off mid-answer${brokeOff ? ` (${clip(brokeOff, 80)})` : ""}; the message was not sent again.`));
    }
    turn.push(...tr.end());
  }
  stop.removeEventListener("abort", onStop);
  return finishTurn(deps, job, turn, tr, { acceptedMs, firstOutputAt });
}

/** Ends the turn: its final text, its row, the push to who asked (or the approval request, which is that push). */
async function finishTurn(deps: TurnDeps, job: TurnJob, turn: LiveTurn, tr: LettaTranslator, at: { acceptedMs?: number | undefined; firstOutputAt?: number | undefined }): Promise<TurnOutcome> {
  const { row } = job;
  const firstOutputMs = at.firstOutputAt === undefined ? undefined : at.firstOutputAt - turn.startedAt;
  // A turn that stopped for approval: the request is recorded before the turn's end, and its
  // message (which mentions the asker) is the push; the turn's own push would be a second one.
  const pending = tr.pendingApproval();
  const asked = pending && deps.approvals?.record({ agentId: job.agentId, agentName: job.agentName, roomId: row.roomId, rootEventId: row.rootEventId, askedOf: row.promptedBy, replyEventId: turn.replyId }, pending);
  const summary = await turn.finish({
    push: asked === undefined,
    record: (sum) => deps.turns.finish(row.id, sum.outcome === "failed" ? "failed" : "done", { steps: tr.steps, tokens: tr.tokens, firstTokenMs: firstOutputMs }),
  });
  if (asked) await deps.approvals?.ask(asked).catch((err: unknown) => deps.log.error({ err, agentId: job.agentId }, "could not ask for the approval in the thread"));
  const failed = summary.outcome === "failed";
  deps.log.info(
    { roomId: row.roomId, agentId: job.agentId, turn: row.id, status: summary.outcome, acceptedMs: at.acceptedMs, firstOutputMs, totalMs: summary.durationMs, steps: tr.steps, tokens: tr.tokens, edits: turn.edits },
    "letta turn finished",
  );
  return { status: failed ? "failed" : "done", firstOutputMs, totalMs: summary.durationMs, replyId: summary.replyId };
}
