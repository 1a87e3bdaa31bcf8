import type { Letta } from "@letta-ai/letta-client";
import type { Logger } from "../log.ts";

// After a restart: did the message of a cut-off turn reach Letta, and what did the agent answer?
// Letta keeps a run per message it took, and the run's messages once each step is done: our
// message (by the otid the bot chose), then the agent's reasoning, tool calls and answer. A run
// still working is waited for; it goes on without a listener (Letta 0.16.8 shields it).

/** What a finished run of the agent said (the message types of its stream, complete). */
export interface RunRecord {
  id: string;
  status: string;
  stopReason: string | undefined;
  messages: unknown[];
  tokens: number | undefined;
  steps: number | undefined;
}

export type RunLookup =
  | { kind: "found"; run: RunRecord }
  /** No run since the message was sent, or only runs of other messages: Letta never had it. */
  | { kind: "absent" }
  /** Letta could not be asked, or a run it started since holds no message to tell whose it is. */
  | { kind: "unknown"; why: string };

interface RawRun {
  id: string;
  status?: string | null;
  created_at?: string | null;
  stop_reason?: string | null;
}

/** Letta's times may lack the zone; they are UTC. */
const lettaTime = (s: string): number => Date.parse(/Z$|[+-]\d\d:?\d\d$/.test(s) ? s : `${s}Z`);
/** How far Letta's clock may be behind the bot's when runs are matched to a send (ms). */
const clockSkewMs = 2000;

export interface RunWait {
  signal: AbortSignal;
  log: Logger;
  /** Between two looks at a run still working. */
  pollMs?: number;
  /** The longest wait for a run to end. */
  maxWaitMs?: number;
}

/** Waits until a run is no longer created or running; its last state. Throws when Letta cannot be asked five times in a row, or at `maxWaitMs`. */
async function settled(client: Letta, runId: string, w: RunWait): Promise<RawRun> {
  const until = Date.now() + (w.maxWaitMs ?? 30 * 60_000);
  let failures = 0;
  for (;;) {
    try {
      const run = (await client.runs.retrieve(runId, { signal: w.signal })) as RawRun;
      failures = 0;
      if (run.status !== "created" && run.status !== "running") return run;
    } catch (err) {
      if (w.signal.aborted || ++failures >= 5) throw err;
    }
    if (Date.now() > until) throw new Error(`run ${runId} still working after ${Math.round((w.maxWaitMs ?? 0) / 1000)} s`);
    await new Promise((r) => setTimeout(r, w.pollMs ?? 500));
    if (w.signal.aborted) throw new Error("the bot is stopping");
  }
}

/** A finished run: its messages in order, and what it cost. */
async function record(client: Letta, run: RawRun, signal: AbortSignal): Promise<RunRecord> {
  const messages = (await client.runs.messages.list(run.id, { limit: 1000, order: "asc" }, { signal })).getPaginatedItems() as unknown[];
  const usage = await client.runs.usage.retrieve(run.id, { signal }).catch(() => undefined);
  const steps = new Set(messages.map((m) => (m as { step_id?: string | null }).step_id).filter(Boolean)).size;
  return { id: run.id, status: run.status ?? "", stopReason: run.stop_reason ?? undefined, messages, tokens: usage?.total_tokens ?? undefined, steps: steps || undefined };
}

/**
 * Finds the run of the message sent with `otid` at `sentAt` (the bot's clock): among the agent's
 * runs started since, each is waited for until it ended, then asked for its messages.
 */
export async function findMessageRun(client: Letta, agentId: string, otid: string, sentAt: number, w: RunWait): Promise<RunLookup> {
  let runs: RawRun[];
  try {
    runs = (await client.runs.list({ agent_id: agentId, limit: 20, order: "desc" } as never, { signal: w.signal })).getPaginatedItems() as RawRun[];
  } catch (err) {
    w.log.warn({ agentId, err }, "could not list the agent's runs");
    return { kind: "unknown", why: "Letta could not be asked" };
  }
  const since = runs.filter((r) => r.created_at && lettaTime(r.created_at) >= sentAt - clockSkewMs).reverse();
  let anonymous = false;
  for (const listed of since) {
    try {
      const rec = await record(client, await settled(client, listed.id, w), w.signal);
      if (rec.messages.some((m) => (m as { otid?: string | null }).otid === otid)) return { kind: "found", run: rec };
      // A run with no input message failed before Letta saved it: it may have been ours.
      if (!rec.messages.some((m) => /^(user|approval_response)_message$/.test(String((m as { message_type?: string }).message_type)))) anonymous = true;
    } catch (err) {
      w.log.warn({ agentId, runId: listed.id, err }, "could not read a run of the agent");
      return { kind: "unknown", why: "Letta could not be asked" };
    }
  }
  return anonymous ? { kind: "unknown", why: "a run Letta started then failed without saving whose it was" } : { kind: "absent" };
}
