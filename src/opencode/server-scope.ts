// One OpenCode server's view of the bot's shared tables. Session ids are per server, so the
// parts of one server (its runner, tracker and desks) find by session id only the threads of
// their own server, recover only its turns and send only its queued prompts. The turn runner
// and tracker are unchanged: they get these views in place of the stores.
import type { Db } from "../store/db.ts";
import { ThreadStore, type Backend, type ThreadRow } from "../store/threads.ts";
import { TurnStore, type TurnRow } from "../store/turns.ts";
import { primaryServerName } from "../config/opencode-servers.ts";
import { PromptQueue, type QueuedPrompt } from "./prompt-queue.ts";

/** The server a thread's session lives on: a row from before several servers (server NULL) is on `default`. */
export const serverOfThread = (t: Pick<ThreadRow, "server">): string => t.server ?? primaryServerName;

/** What the threads table says of a server's ownership, for rows keyed by room and thread root. */
export interface ServerScope {
  readonly server: string;
  /** True when the thread (room, root) is this server's. A row whose thread is gone belongs to `default`, as before. */
  owns(row: { roomId: string; rootEventId: string }): boolean;
}

export function serverScope(threads: ThreadStore, server: string): ServerScope {
  return {
    server,
    owns: (row) => {
      const t = threads.get(row.roomId, row.rootEventId);
      return (t ? serverOfThread(t) : primaryServerName) === server;
    },
  };
}

/** The threads table as one server sees it: a session id names only that server's threads. */
export class ServerThreads extends ThreadStore {
  readonly server: string;

  constructor(db: Db, server: string) {
    super(db);
    this.server = server;
  }

  override bySession(backend: Backend, sessionId: string): ThreadRow[] {
    const rows = super.bySession(backend, sessionId);
    return backend === "opencode" ? rows.filter((t) => serverOfThread(t) === this.server) : rows;
  }
}

/** The turns table as one server sees it: the turns left running are recovered by their thread's server. */
export class ServerTurns extends TurnStore {
  private readonly scope: ServerScope;

  constructor(db: Db, scope: ServerScope) {
    super(db);
    this.scope = scope;
  }

  override running(): TurnRow[] {
    return super.running().filter((t) => this.scope.owns(t));
  }
}

/** The prompt queue as one server sees it: its sessions' queues, and a room's prompts of its threads. */
export class ServerQueue extends PromptQueue {
  private readonly scope: ServerScope;

  constructor(db: Db, scope: ServerScope) {
    super(db);
    this.scope = scope;
  }

  override sessions(): string[] {
    return super.sessions().filter((s) => {
      const next = this.next(s);
      return next !== undefined && this.scope.owns(next);
    });
  }

  override inRoom(roomId: string): QueuedPrompt[] {
    return super.inRoom(roomId).filter((q) => this.scope.owns(q));
  }
}
