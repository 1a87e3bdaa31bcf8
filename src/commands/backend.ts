import type { Backend, ThreadRow } from "../store/threads.ts";
import type { CommandSpec } from "./types.ts";

export interface PromptRequest {
  roomId: string;
  eventId: string;
  sender: string;
  text: string;
  /** Files the person attached (downloaded from the homeserver). */
  files?: Array<{ mime: string; filename: string; data: Buffer }>;
}

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
}

/** A session's title from the prompt that started it: one line, at most 60 characters. */
export function titleFrom(text: string, fallback = "Matrix session"): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 60 ? `${line.slice(0, 57)}…` : line || fallback;
}
