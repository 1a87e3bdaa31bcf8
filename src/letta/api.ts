import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError, Letta } from "@letta-ai/letta-client";
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

export interface RetryPolicy {
  maxRetries: number;
  retryDelayMs: number;
}

export interface RetryNotice {
  attempt: number;
  of: number;
  delayMs: number;
  error: unknown;
}

/** What the bot reads from a Letta answer stream (see LETTA-NOTES.md for the wire format). */
export interface LettaStream extends AsyncIterable<unknown> {
  controller: AbortController;
}

/**
 * Whether a failed request cannot have been processed, so sending it again is safe: a refused
 * or broken connection or a timeout before the answer began, or a 5xx status (never an error
 * from inside a stream that already started: that one has no status).
 */
/** Letta already has the message a failed send was retrying: sending it again would double it. */
export class AlreadyAccepted extends Error {
  override name = "AlreadyAccepted";
  constructor() {
    super("Letta took the message, but its answer could not be streamed to the bot; the message was not sent again.");
  }
}

export function isRetryable(err: unknown): boolean {
  if (err instanceof APIUserAbortError) return false;
  if (err instanceof APIConnectionError) return true;
  return err instanceof APIError && typeof err.status === "number" && err.status >= 500;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

/** Runs `fn`, retrying retryable failures `maxRetries` times with exponential backoff. */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  opts: { onRetry?: (n: RetryNotice) => void | Promise<void>; signal?: AbortSignal } = {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt > policy.maxRetries || !isRetryable(err) || opts.signal?.aborted) {
        if (attempt > 1 && isRetryable(err)) (err as { retries?: number }).retries = attempt - 1;
        throw err;
      }
      const delayMs = policy.retryDelayMs * 2 ** (attempt - 1);
      await opts.onRetry?.({ attempt, of: policy.maxRetries, delayMs, error: err });
      await sleep(delayMs, opts.signal);
    }
  }
}

const oneLine = (s: string, n = 200): string => {
  const line = s.replace(/\s+/g, " ").trim();
  return line.length > n ? `${line.slice(0, n - 1)}…` : line;
};

/** The server's own words from an error body: FastAPI's `detail`, Letta's `message`/`detail`. */
function bodyDetail(body: unknown): string | undefined {
  if (typeof body === "string") return body || undefined;
  if (!body || typeof body !== "object") return undefined;
  const b = body as { detail?: unknown; message?: unknown; error?: unknown };
  if (typeof b.detail === "string") return typeof b.message === "string" && b.message !== b.detail ? `${b.message} — ${b.detail}` : b.detail;
  if (Array.isArray(b.detail)) {
    return b.detail.map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).slice(1).join(".")}: ${d.msg ?? "invalid"}`).join("; ");
  }
  if (typeof b.message === "string") return b.message;
  if (b.error) return bodyDetail(b.error);
  return undefined;
}

function networkCause(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (code === "ECONNREFUSED") return "connection refused";
    if (code === "ECONNRESET" || code === "UND_ERR_SOCKET") return "connection reset";
    if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "host not found";
    if (typeof code === "string" && code.length > 0) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return "connection failed";
}

/** One line for people: what went wrong talking to Letta, without stack or secrets. */
/**
 * Tokens of the configured Letta servers. Error answers quote the server's own words, and a
 * server or proxy may echo the Authorization header back: those words go into a room.
 */
const tokens = new Set<string>();

function scrubTokens(text: string): string {
  let out = text.replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 [redacted]");
  for (const t of tokens) if (t.length >= 4) out = out.split(t).join("[redacted]");
  return out;
}

export function describeLettaError(err: unknown, baseUrl: string): string {
  return scrubTokens(describeRaw(err, baseUrl));
}

function describeRaw(err: unknown, baseUrl: string): string {
  const retries = (err as { retries?: number } | null)?.retries;
  const after = retries ? ` (after ${retries} ${retries === 1 ? "retry" : "retries"})` : "";
  if (err instanceof APIConnectionTimeoutError) return `Letta at ${baseUrl} did not answer in time${after}.`;
  if (err instanceof APIConnectionError) return `Letta is not reachable at ${baseUrl}: ${networkCause(err)}${after}.`;
  if (err instanceof APIError && typeof err.status === "number") {
    const detail = bodyDetail(err.error);
    const what = err.status >= 500 ? "Letta failed" : "Letta refused the request";
    return `${what} (HTTP ${err.status})${detail ? `: ${oneLine(detail).replace(/\.$/, "")}` : ""}${after}.`;
  }
  if (err instanceof APIError) return oneLine(bodyDetail(err.error) ?? err.message);
  return oneLine((err as Error)?.message ?? String(err));
}

export const isNotFound = (err: unknown): boolean => err instanceof APIError && err.status === 404;

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

  constructor(opts: LettaApiOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.policy = { maxRetries: opts.maxRetries, retryDelayMs: opts.retryDelayMs };
    this.log = opts.log;
    if (opts.apiToken) tokens.add(opts.apiToken);
    this.client = new Letta({ baseURL: this.baseUrl, apiKey: opts.apiToken ?? null, maxRetries: 0, timeout: opts.timeoutMs, logLevel: "off" });
  }

  private retry<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withRetry(fn, this.policy, {
      signal,
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
   * Retried only until Letta answers: once the stream began the message is never sent again.
   */
  async sendStreaming(
    agentId: string,
    input: string | ApprovalAnswer,
    otid: string,
    opts: { signal: AbortSignal; onRetry?: (n: RetryNotice) => void | Promise<void> },
  ): Promise<LettaStream> {
    const firstSentAt = Date.now();
    return withRetry(
      async (attempt) => {
        // A 5xx may come from a proxy after Letta took the message: before sending again, ask
        // Letta whether it has it (our otid in its history, or a run it started since we sent;
        // the bot sends one message at a time per agent). Only what provably did not arrive is sent again.
        if (attempt > 1 && ((await this.hasMessage(agentId, otid)) || (await this.runSince(agentId, firstSentAt)))) throw new AlreadyAccepted();
        return (await this.client.agents.messages.create(
          agentId,
          {
            messages: [messageOf(input, otid)],
            streaming: true,
            stream_tokens: true,
            include_pings: true,
          },
          { signal: opts.signal },
        )) as unknown as LettaStream;
      },
      this.policy,
      {
        signal: opts.signal,
        onRetry: async (n) => {
          this.log.warn({ agentId, attempt: n.attempt, of: n.of, delayMs: n.delayMs, err: n.error }, "sending to Letta failed before it answered; retrying");
          await opts.onRetry?.(n);
        },
      },
    );
  }

  /** Whether Letta started a run for the agent at or after `since` (ms): a message of ours it is answering or answered. */
  async runSince(agentId: string, since: number): Promise<boolean> {
    try {
      const runs = await this.client.runs.list({ agent_id: agentId, limit: 1, order: "desc" } as never);
      const newest = runs.getPaginatedItems()[0] as { created_at?: string | null } | undefined;
      return newest?.created_at ? Date.parse(newest.created_at.endsWith("Z") ? newest.created_at : `${newest.created_at}Z`) >= since : false;
    } catch (err) {
      this.log.warn({ agentId, err }, "could not list the agent's runs");
      return false;
    }
  }

  /** Whether the agent's recent history holds a message sent with this otid (a send whose answer was lost). */
  async hasMessage(agentId: string, otid: string): Promise<boolean> {
    try {
      const page = await this.client.agents.messages.list(agentId, { limit: 50, order: "desc" } as never);
      return page.getPaginatedItems().some((m) => (m as { otid?: string | null }).otid === otid);
    } catch (err) {
      // Unknown: sending again could double it, not sending could lose it. Letta's own
      // dedupe by otid is the last guard; the failure is logged.
      this.log.warn({ agentId, err }, "could not check whether Letta already has the message");
      return false;
    }
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
