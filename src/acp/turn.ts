import type { ClientContext, SessionUpdate } from "@agentclientprotocol/sdk";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import type { ThreadRow } from "../store/threads.ts";
import type { TurnEngine } from "../turns/engine.ts";
import { clip } from "../turns/render.ts";
import { AcpTranslator } from "./events.ts";
import type { AcpTurnRow, AcpTurnStore } from "./store.ts";

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
  translator: AcpTranslator;
  onUpdate(u: SessionUpdate): void;
}

export interface TurnDeps {
  agentName: string;
  engine: TurnEngine;
  turns: AcpTurnStore;
  log: Logger;
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
 * Runs one prompt: the engine's live reply shows at once; `session/prompt` goes out; the
 * agent's updates become turn events until the prompt's result says why it stopped.
 */
export async function runTurn(deps: TurnDeps, job: TurnJob): Promise<void> {
  const { row } = job;
  const translator = new AcpTranslator();
  const turn = deps.engine.open({
    target: job.target,
    replyEventId: row.replyEventId,
    onPosted: (id) => deps.turns.setReply(row.id, id),
    working: `⏳ _${deps.agentName} is working…_`,
    promptedBy: row.promptedBy,
    title: job.thread.title ?? undefined,
  });
  turn.show();

  let sessionId: string | undefined;
  let cutOff = false;
  let stopReason: string | undefined;
  let tokens: number | undefined;
  try {
    const s = await deps.session(job, (text) => turn.push({ type: "note", text }));
    sessionId = s.sessionId;
    deps.turns.running(row.id, sessionId);
    deps.attach(sessionId, { job, translator, onUpdate: (u) => turn.push(...translator.events(u)) });
    const res = await s.agent.request("session/prompt", { sessionId, prompt: [{ type: "text", text: job.text }] });
    stopReason = res.stopReason;
    // `usage` is not in the stable schema yet; OpenCode sends it.
    const usage = (res as { usage?: { totalTokens?: unknown } }).usage;
    if (typeof usage?.totalTokens === "number") tokens = usage.totalTokens;
    turn.push(...translator.end(deps.agentName, res.stopReason, usage));
  } catch (err) {
    cutOff = deps.stopping();
    turn.push({ type: "usage", usage: { label: deps.agentName } });
    if (cutOff) turn.push({ type: "note", text: "⏹️ Cut off: the bot is restarting. The thread will say so when it is back." });
    else turn.push({ type: "error", title: `${deps.agentName} error`, message: clip(deps.explain(err), 300) });
  } finally {
    if (sessionId !== undefined) deps.attach(sessionId, undefined);
  }

  // A turn cut off by the bot's own stop stays 'running' and pushes nobody: the next start closes it in its thread.
  const summary = await turn.finish({
    push: !cutOff,
    aborted: stopReason === "cancelled",
    record: (s) => {
      if (!cutOff) deps.turns.finish(row.id, s.outcome === "failed" ? "failed" : "done", { stopReason, tokens });
    },
  });
  deps.log.info({ agent: deps.agentName, roomId: row.roomId, turn: row.id, sessionId, stopReason, outcome: summary.outcome, totalMs: summary.durationMs, edits: turn.edits }, "acp turn finished");
}
