// The one vocabulary every backend speaks to the turn engine. A backend translates what its
// agent sends (OpenCode's SSE events, Letta's stream, ACP's session updates) into these; the
// engine keeps the state, renders it and posts it. Nothing here knows which backend it serves.

export type ToolStatus = "pending" | "running" | "done" | "failed";

/** One tool call as people see it: `▶️ bash \`npm test\` ✗ exit 1`. */
export interface ToolInfo {
  name: string;
  /** A hint for the icon when the name is unknown (ACP's tool kinds: read, edit, execute…). */
  kind?: string | undefined;
  /** What the tool acts on, already shortened: a path, a command in backticks, a pattern. */
  subject?: string | undefined;
  status: ToolStatus;
  error?: string | undefined;
  /** A command's exit code; non-zero shows as a failure even when the tool itself completed. */
  exit?: number | undefined;
  /** Lines shown under the tool line (a todo list). */
  detail?: string[] | undefined;
  /** What the tool printed, and a file edit's diff: shown only in verbose threads (untrusted text, always fenced). */
  output?: string | undefined;
  diff?: string | undefined;
}

export interface PlanEntry {
  content: string;
  status: "pending" | "in_progress" | "completed";
}

/** What the turn's work cost, for the footer; each field replaces the one before. */
export interface Usage {
  /** The model or agent that answered: `scripted/scripted-model`, `letta pal`, `gemini`. */
  label?: string | undefined;
  steps?: number | undefined;
  tokens?: number | undefined;
  cost?: number | undefined;
}

/** How a turn ended besides its error, if any: shown as a line before the footer. */
export type EndReason = "done" | "aborted" | "interrupted" | "limit" | "stopped";

export type ContentEvent =
  /** Assistant text: `delta` appends; `text` is the whole text so far (a shorter one never replaces a longer one). */
  | { type: "text"; id: string; delta?: string; text?: string }
  | { type: "reasoning"; id: string; delta?: string; text?: string; hidden?: boolean }
  /** A tool call, created or updated (fields given replace the ones known). */
  | { type: "tool"; id: string; tool: Partial<ToolInfo> & { name?: string } };

export type TurnEvent =
  | ContentEvent
  /**
   * The agent's own record of the turn (read when it ends or after a restart): the blocks in
   * the record's order. Blocks not in it are dropped; a block's text never gets shorter, so
   * words once shown stay even when the record kept less than was streamed.
   */
  | { type: "snapshot"; blocks: ContentEvent[] }
  | { type: "plan"; entries: PlanEntry[] }
  | { type: "approval"; id: string; tool: string; state: "asked" | "allowed" | "denied" }
  /** The agent waits to try again (a model outage): shown until the next output. */
  | { type: "retry"; attempt: number; of?: number | undefined; nextInMs?: number | undefined; message: string }
  | { type: "usage"; usage: Usage }
  | { type: "files"; paths: string[] }
  /** A line of the bot's own about this turn (a session reloaded, the bot restarting). */
  | { type: "note"; text: string }
  | { type: "error"; title: string; message: string; advice?: string | undefined }
  /** Ends the turn's content; `note` words a reason other than a plain end (a limit, a cancel). */
  | { type: "end"; reason: EndReason; note?: string | undefined }
  /** The prompt never reached the agent: the reply is this one line, with no footer. */
  | { type: "rejected"; text: string };
