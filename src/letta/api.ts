import { APIConnectionTimeoutError, Letta } from "@letta-ai/letta-client";
import type { Logger } from "../log.ts";

export interface AgentInfo {
  id: string;
  name: string;
  /** Model handle, e.g. "openai/gpt-4.1-mini". */
  model: string;
}

/** A person's answer to an agent's approval request (Letta 0.16.8: an `approval` message). */
export interface ApprovalAnswer {
  toolCallIds: string[];
  approve: boolean;
  reason?: string | undefined;
}

/**
 * What `sendStreaming` sends: a user message, or the answer to the agent's approval request,
 * which continues its run. Letta takes one answer for every call of a request.
 */
function messageOf(input: string | ApprovalAnswer, otid: string): { role: "user"; content: string; otid: string } | { type: "approval"; approvals: Array<{ type: "approval"; tool_call_id: string; approve: boolean; reason: string | null }>; otid: string } {
  if (typeof input === "string") return { role: "user", content: input, otid };
  return { type: "approval", approvals: input.toolCallIds.map((id) => ({ type: "approval", tool_call_id: id, approve: input.approve, reason: input.reason ?? null })), otid };
}

export { AlreadyAccepted, describeLettaError, isNotFound, isRetryable, withRetry, type LettaStream, type RetryNotice, type RetryPolicy } from "./retry.ts";
import { AlreadyAccepted, isNotFound, neverArrived, scrubToken, withRetry, type LettaStream, type RetryNotice, type RetryPolicy } from "./retry.ts";
import { findMessageRun, type RunLookup, type RunWait } from "./runs.ts";

function toInfo(a: { id: string; name: string; model?: string | null; llm_config?: { handle?: string | null; model?: string } | null }): AgentInfo {
  return { id: a.id, name: a.name, model: a.model ?? a.llm_config?.handle ?? a.llm_config?.model ?? "unknown model" };
}

/** The core memory a new agent starts with: who it is and who it talks to (a Matrix room). */
const defaultMemoryBlocks = [
  {
    label: "persona",
    value: "I am a helpful assistant in a Matrix chat room. I answer concisely, in Markdown.",
  },
  {
    label: "human",
    value: "Several people in a Matrix room talk to me. Each message starts with the speaker's name in brackets, like [Alice].",
  },
];

export interface LettaApiOptions extends RetryPolicy {
  baseUrl: string;
  apiToken?: string | undefined;
  timeoutMs: number;
  log: Logger;
}

/**
 * The Letta REST API as the bot uses it. The client's own retries are off (it would retry a
 * POST and could send a message twice); `withRetry` retries only what cannot have been processed.
 */
export class LettaApi {
  readonly baseUrl: string;
  readonly client: Letta;
  readonly policy: RetryPolicy;
  private readonly log: Logger;
  /** How long the questions before a re-send may take: a server that did not answer the send in time rarely answers them. */
  private readonly checkTimeoutMs: number;

  constructor(opts: LettaApiOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.policy = { maxRetries: opts.maxRetries, retryDelayMs: opts.retryDelayMs };
    this.log = opts.log;
    this.checkTimeoutMs = Math.min(5000, Math.max(500, opts.timeoutMs / 2));
    if (opts.apiToken) scrubToken(opts.apiToken);
    this.client = new Letta({ baseURL: this.baseUrl, apiKey: opts.apiToken ?? null, maxRetries: 0, timeout: opts.timeoutMs, logLevel: "off" });
  }

  private retry<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withRetry(fn, this.policy, {
      signal,
      // A server that let a call time out is hung or swamped: asking again would hold the room up
      // for another timeout each time.
      mayRetry: (err) => !(err instanceof APIConnectionTimeoutError),
      onRetry: (n) => this.log.warn({ what, attempt: n.attempt, of: n.of, delayMs: n.delayMs, err: n.error }, "Letta request failed; retrying"),
    });
  }

  /** One quick look, no retries: for `status`. */
  async health(): Promise<{ version: string; status: string; ms: number }> {
    const t0 = performance.now();
    const h = await this.client.health({ timeout: 5000 });
    return { ...h, ms: Math.round(performance.now() - t0) };
  }

  /** The first `limit` agents (one page: no walking a cursor through a large server). */
  async listAgents(limit = 100): Promise<AgentInfo[]> {
    return this.retry("list agents", async () => (await this.client.agents.list({ limit })).getPaginatedItems().map(toInfo));
  }

  async getAgent(id: string): Promise<AgentInfo | undefined> {
    try {
      return toInfo(await this.retry("get agent", () => this.client.agents.retrieve(id)));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async agentsNamed(name: string): Promise<AgentInfo[]> {
    return this.retry("find agent", async () =>
      (await this.client.agents.list({ name, limit: 50 })).getPaginatedItems().filter((a) => a.name === name).map(toInfo),
    );
  }

  /** An agent by id, or else by exact name: one match, several (ambiguous names) or none. */
  async findAgents(ref: string): Promise<AgentInfo[]> {
    if (/^agent-[0-9a-f-]{8,}$/i.test(ref)) {
      const byId = await this.getAgent(ref);
      if (byId) return [byId];
    }
    return this.agentsNamed(ref);
  }

  /**
   * Creates an agent. A retry first checks whether the failed attempt created it after all,
   * so a 5xx after the fact never leaves two agents of one name.
   */
  async createAgent(name: string, model: string, embedding: string | undefined): Promise<AgentInfo> {
    return withRetry(
      async (attempt) => {
        if (attempt > 1) {
          const made = await this.agentsNamed(name);
          if (made[0]) return made[0];
        }
        return toInfo(await this.client.agents.create({ name, model, ...(embedding ? { embedding } : {}), memory_blocks: defaultMemoryBlocks }));
      },
      this.policy,
      { onRetry: (n) => this.log.warn({ attempt: n.attempt, delayMs: n.delayMs, err: n.error }, "creating a Letta agent failed; retrying") },
    );
  }

  /**
   * Sends one user message and resolves with the answer stream as soon as Letta accepted it.
   * Sent again only while Letta provably does not have it: once the stream began, never.
   */
  async sendStreaming(
    agentId: string,
    input: string | ApprovalAnswer,
    otid: string,
    opts: { signal: AbortSignal; onRetry?: (n: RetryNotice) => void | Promise<void> },
  ): Promise<LettaStream> {
    const firstSentAt = Date.now();
    return withRetry(
      async () =>
        (await this.client.agents.messages.create(
          agentId,
          {
            messages: [messageOf(input, otid)],
            streaming: true,
            stream_tokens: true,
            include_pings: true,
          },
          { signal: opts.signal },
        )) as unknown as LettaStream,
      this.policy,
      {
        signal: opts.signal,
        // A refused connection never reached Letta. A timeout or a 5xx (perhaps a proxy's, after
        // Letta took the message) may have: Letta is asked whether it has it (our otid in its
        // history, or a run it started since we sent; the bot sends one message at a time per
        // agent). Sent again only when it provably does not; when Letta cannot say, not at all.
        mayRetry: async (err) => {
          if (neverArrived(err)) return true;
          const has = await this.arrived(agentId, otid, firstSentAt);
          if (has === true) throw new AlreadyAccepted();
          if (has === undefined) (err as { unconfirmed?: boolean }).unconfirmed = true;
          return has === false;
        },
        onRetry: async (n) => {
          this.log.warn({ agentId, attempt: n.attempt, of: n.of, delayMs: n.delayMs, err: n.error }, "sending to Letta failed before it answered; retrying");
          await opts.onRetry?.(n);
        },
      },
    );
  }

  /** Whether Letta has the message sent with `otid` at `since` (ms): true, false, or undefined when it cannot tell in time. */
  async arrived(agentId: string, otid: string, since: number): Promise<boolean | undefined> {
    const [has, ran] = await Promise.all([this.hasMessage(agentId, otid), this.runSince(agentId, since)]);
    if (has === true || ran === true) return true;
    return has === false && ran === false ? false : undefined;
  }

  /** Whether Letta started a run for the agent at or after `since` (ms): a message of ours it is answering or answered. Undefined: could not ask. */
  async runSince(agentId: string, since: number): Promise<boolean | undefined> {
    try {
      const runs = await this.client.runs.list({ agent_id: agentId, limit: 1, order: "desc" } as never, { timeout: this.checkTimeoutMs });
      const newest = runs.getPaginatedItems()[0] as { created_at?: string | null } | undefined;
      return newest?.created_at ? Date.parse(newest.created_at.endsWith("Z") ? newest.created_at : `${newest.created_at}Z`) >= since : false;
    } catch (err) {
      this.log.warn({ agentId, err }, "could not list the agent's runs");
      return undefined;
    }
  }

  /** Whether the agent's recent history holds a message sent with this otid (a send whose answer was lost). Undefined: could not ask. */
  async hasMessage(agentId: string, otid: string): Promise<boolean | undefined> {
    try {
      const page = await this.client.agents.messages.list(agentId, { limit: 50, order: "desc" } as never, { timeout: this.checkTimeoutMs });
      return page.getPaginatedItems().some((m) => (m as { otid?: string | null }).otid === otid);
    } catch (err) {
      this.log.warn({ agentId, err }, "could not check whether Letta already has the message");
      return undefined;
    }
  }

  /** After a restart: the run of the message sent with `otid` at `sentAt`, once it ended (see runs.ts). */
  findMessageRun(agentId: string, otid: string, sentAt: number, w: Omit<RunWait, "log">): Promise<RunLookup> {
    return findMessageRun(this.client, agentId, otid, sentAt, { ...w, log: this.log });
  }

  // Tools and secrets, for agents that delegate to OpenCode through the bot (src/mcp/).

  /** The agent's secrets: the environment its tools run with (Letta returns the values). */
  async agentSecrets(agentId: string): Promise<Record<string, string>> {
    const a = await this.retry("read agent secrets", () => this.client.agents.retrieve(agentId, { include: ["agent.secrets"] }));
    return Object.fromEntries((a.secrets ?? []).map((s) => [s.key, s.value ?? ""]));
  }

  /** Sets some of the agent's secrets, keeping the others (Letta replaces the whole set). */
  async mergeAgentSecrets(agentId: string, secrets: Record<string, string>): Promise<void> {
    const merged = { ...(await this.agentSecrets(agentId)), ...secrets };
    await this.retry("set agent secrets", () => this.client.agents.update(agentId, { secrets: merged }));
  }

  /** Creates or updates a Python tool by its function name; returns its id. */
  async upsertTool(tool: { sourceCode: string; description: string; jsonSchema: Record<string, unknown>; tags: string[] }): Promise<string> {
    const t = await this.retry("upsert tool", () =>
      this.client.tools.upsert({ source_code: tool.sourceCode, description: tool.description, json_schema: tool.jsonSchema, tags: tool.tags, source_type: "python" }),
    );
    return t.id;
  }

  /** The names of the tools attached to an agent. */
  async agentToolNames(agentId: string): Promise<string[]> {
    const a = await this.retry("read agent tools", () => this.client.agents.retrieve(agentId, { include: ["agent.tools"] }));
    return (a.tools ?? []).map((t) => t.name ?? "").filter(Boolean);
  }

  async attachTool(agentId: string, toolId: string): Promise<void> {
    await this.retry("attach tool", () => this.client.agents.tools.attach(toolId, { agent_id: agentId }));
  }

  /** Cancels the agent's active runs (what `abort` stops on Letta's side). */
  async cancelRuns(agentId: string): Promise<void> {
    await this.client.agents.messages.cancel(agentId);
  }
}
