import type { ApprovalReply } from "../commands/approvals.ts";
import type { AgentInfo } from "./api.ts";

/**
 * What app.ts plugs into the Letta backend from outside it: the delegation of coding tasks to
 * OpenCode (src/mcp/). letta/ knows only these functions, so it never imports that part.
 */
export interface LettaHooks {
  /** A reaction (e.g. on a delegated permission request in a Letta thread); true when taken. */
  onReaction?(roomId: string, eventId: string, key: string, sender: string): Promise<boolean>;
  /** `abort` in a Letta thread: stops the work the agent delegated there. A line for the answer, or undefined when nothing ran. */
  abortThread?(roomId: string, rootEventId: string, by: string): Promise<string | undefined>;
  /** `allow` / `deny` in a Letta thread: answers the pending delegated permission request. The answer, or undefined when none is pending. */
  answerPermission?(roomId: string, rootEventId: string, reply: ApprovalReply, by: string, reason?: string): Promise<string | undefined>;
  /** An agent was created or bound in a room (`new`, `use`): it gets the delegation tools if the room wants them. A line for the answer, or undefined. */
  agentBound?(agent: AgentInfo, roomId: string, by: string): Promise<string | undefined>;
  /** `delegate [on|off]`: the room's setting, shown or changed. The answer. */
  delegation?(roomId: string, change: { on: boolean; by: string } | undefined): Promise<string>;
}
