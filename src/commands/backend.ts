import type { Backend, ThreadRow } from "../store/threads.ts";
import type { CommandSpec } from "./types.ts";

/** A prompt as a person sent it; defined with the turn queue that stores it. */
export type { PromptRequest } from "../turns/queue.ts";
import type { PromptRequest } from "../turns/queue.ts";

/**
 * An agent system behind a prefix (`!oc` → OpenCode, `!letta` → Letta). The router owns who
 * may say what; a backend owns what prompts and commands do. One implementation per folder.
 */
export interface AgentBackend {
  readonly name: Backend;
  readonly prefix: string;
  readonly commands: CommandSpec[];
  /** Short description for help: what a bare `<prefix> <text>` does. */
  readonly promptSummary: string;
  /** A prompt outside any of this backend's threads: a new session, threaded on `root`. */
  startThread(req: PromptRequest, root: string): Promise<void>;
  /** A message in a thread this backend owns. Returns the queue position (0 = sent now). */
  followUp(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }>;
  /** A reaction by an allowed user on `eventId` in `roomId`; true when it was this backend's to take (e.g. a permission answer). */
  onReaction?(roomId: string, eventId: string, key: string, sender: string): Promise<boolean>;

  // The lifecycle, all optional: the bot calls each backend's hooks in turn and names none.
  /** Starts or connects what the backend needs; resolves once it can take prompts, or has said why not. */
  start?(): Promise<void>;
  /** Finishes what a previous run left (turns, requests); new room events wait until every backend's is done. */
  reconcile?(): Promise<void>;
  /** Takes no new work; finishes what is in flight or leaves it in the database for the next start. */
  stop?(): Promise<void>;
  /** This backend's part of GET /health (a list: one entry per server, e.g. several OpenCode servers). */
  health?(): BackendHealth | BackendHealth[] | Promise<BackendHealth | BackendHealth[]>;
  /** Turns streaming now, for /metrics. */
  activeTurns?(): number;
}

/** One backend's part of GET /health: `ok`, and what an operator needs to see why not. Listed under `section` (default: its name). */
export interface BackendHealth {
  name: string;
  section?: string;
  ok: boolean;
  [detail: string]: unknown;
}

/** A session's title from the prompt that started it: one line, at most 60 characters. */
export function titleFrom(text: string, fallback = "Matrix session"): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 60 ? `${line.slice(0, 57)}…` : line || fallback;
}
