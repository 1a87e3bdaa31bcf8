import type { LettaTurnStore } from "../letta/store.ts";
import { DelegationRefused, type DelegationBinding } from "../opencode/delegate.ts";
import type { ThreadStore } from "../store/threads.ts";
import type { McpRoomStore } from "./store.ts";

export interface BinderDeps {
  turns: LettaTurnStore;
  threads: ThreadStore;
  rooms: McpRoomStore;
  /** letta.delegateToOpencode: rooms that set nothing follow it. */
  defaultOn: boolean;
}

/**
 * Ties a tool call to the Matrix thread it belongs to. The token named the agent; the bot runs
 * one turn per agent at a time, so the agent's running turn is the thread that caused the call.
 * An agent with no running turn in a Letta thread the bot knows (someone talking to it through
 * Letta's own API or ADE) gets no OpenCode: there is no one in Matrix to see or stop the work.
 */
export class Binder {
  private readonly d: BinderDeps;

  constructor(deps: BinderDeps) {
    this.d = deps;
  }

  roomAllows(roomId: string): boolean {
    return this.d.rooms.get(roomId)?.on ?? this.d.defaultOn;
  }

  bind(agentId: string): DelegationBinding {
    const turn = this.d.turns.running().filter((t) => t.agentId === agentId).pop();
    if (!turn) {
      throw new DelegationRefused(
        "Refused: this call is not part of a conversation in a Matrix thread the bot is running, so it may not use OpenCode. Ask in the Matrix room instead.",
      );
    }
    const thread = this.d.threads.get(turn.roomId, turn.rootEventId);
    if (thread?.backend !== "letta" || thread.sessionId !== agentId) {
      throw new DelegationRefused("Refused: the conversation this call belongs to is not a Letta thread of this agent.");
    }
    if (!this.roomAllows(turn.roomId)) {
      throw new DelegationRefused("Refused: this room turned delegation to OpenCode off (`delegate off`). Answer without OpenCode.");
    }
    return {
      agentId,
      agentName: thread.agent ?? agentId,
      roomId: turn.roomId,
      rootEventId: turn.rootEventId,
      replyTo: turn.replyEventId ?? turn.promptEventId,
      promptedBy: turn.promptedBy,
    };
  }
}
