import type { Logger } from "../log.ts";
import type { MessageContent } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { titleFrom, type PromptRequest } from "../commands/backend.ts";
import type { Db } from "../store/db.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import { occurrenceTxnId, promptMessage } from "./messages.ts";
import type { ScheduledPrompt, ScheduleStore } from "./store.ts";
import { nextCronTime } from "./when.ts";

/**
 * What the scheduler needs of the backend that takes scheduled prompts (OpenCode): it never
 * reaches into the backend's internals, and the backend's folder may depend on this one.
 */
export interface ScheduledPromptTarget {
  /** The backend name its threads are stored under. */
  readonly name: string;
  /** The project directory new sessions of the room work in. */
  roomDirectory(roomId: string): string;
  /** A new session (on the room's server, where there are several); its id. */
  createSessionFor(title: string, directory: string, roomId: string): Promise<string>;
  /** What a new thread of the room stores as its server (null: the only, or the first, one). */
  threadServerOf?(roomId: string): string | null;
  /** Puts the prompt in the thread's durable queue; called inside the scheduler's transaction. */
  enqueue(thread: ThreadRow, req: PromptRequest): void;
  /** Sends the session's next queued prompt if it is idle. */
  sendNext(sessionId: string): Promise<void>;
  /** False while the backend is unreachable or still recovering: due prompts then wait instead of failing. */
  ready(): boolean;
}

export interface SchedulerDeps {
  db: Db;
  store: ScheduleStore;
  target: ScheduledPromptTarget;
  threads: ThreadStore;
  /** The bot's sender: its 429s hold these sends back too, and are waited out, not counted as failed tries. */
  sender: MatrixSender;
  log: Logger;
  pollIntervalMs: number;
  timezone: string;
  /** A row the `send` CLI held longer is taken over (store.ts, heldTimeoutMs; tests shorten it). */
  heldTimeoutMs?: number;
}

/** Tries per occurrence before it is given up (and the room told). */
const maxAttempts = 5;

/** A failure that will not go away by trying again. */
class Unfireable extends Error {}

/**
 * Fires due prompts: polls the table, claims due rows atomically, posts each prompt's message,
 * and hands the prompt to the session's durable queue in the same transaction that marks the
 * occurrence fired, so it reaches OpenCode exactly once even across restarts.
 */
export class Scheduler {
  private readonly d: SchedulerDeps;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(deps: SchedulerDeps) {
    this.d = deps;
  }

  start(): void {
    const recovered = this.d.store.recoverFiring();
    if (recovered > 0) this.d.log.info({ recovered }, "firing again scheduled prompts a stopped process had claimed");
    this.timer = setInterval(() => void this.tick(), this.d.pollIntervalMs);
    this.timer.unref();
    void this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One poll; overlapping polls are skipped rather than run twice. */
  tick(): Promise<void> {
    if (this.running || this.stopped || !this.d.target.ready()) return this.running ?? Promise.resolve();
    const poll = (async () => {
      try {
        const released = this.d.store.releaseStaleHeld(Date.now(), this.d.heldTimeoutMs);
        if (released > 0) this.d.log.warn({ released }, "posting prompts a `send` CLI left half-sent (it stopped while posting)");
        for (const row of this.d.store.claimDue()) {
          if (this.stopped) {
            this.d.store.recoverFiring();
            break;
          }
          await this.fireSafely(row);
        }
      } catch (err) {
        this.d.log.error({ err }, "scheduler poll failed");
      }
    })();
    // Cleared from outside: a poll with nothing due finishes before this assignment.
    const run: Promise<void> = poll.finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async fireSafely(row: ScheduledPrompt): Promise<void> {
    try {
      await this.fire(row);
      this.d.log.info({ id: row.id, roomId: row.roomId, occurrence: row.firedCount + 1 }, "scheduled prompt fired");
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const giveUp = err instanceof Unfireable || row.attempts + 1 >= maxAttempts;
      this.d.log.warn({ err, id: row.id, attempt: row.attempts + 1, giveUp }, "scheduled prompt could not fire");
      if (!giveUp) {
        this.d.store.failed(row.id, message, Date.now() + 5000 * (row.attempts + 1));
        return;
      }
      if (row.cron) {
        // A recurring prompt skips this occurrence but keeps its schedule.
        this.d.store.failed(row.id, message, nextCronTime(row.cron, Date.now(), this.d.timezone));
      } else {
        this.d.store.failed(row.id, message, null);
      }
      await this.put(row.roomId, `sched-failed.${row.createdAt}.${row.id}.${row.firedCount}`, {
        msgtype: "m.notice",
        body: `⚠️ Scheduled prompt #${row.id} could not be sent: ${message}`,
        "m.mentions": {},
      }).catch(() => undefined);
    }
  }

  private nextDue(row: ScheduledPrompt): number | null {
    return row.cron ? nextCronTime(row.cron, Math.max(Date.now(), row.dueAt), this.d.timezone) : null;
  }

  private async fire(row: ScheduledPrompt): Promise<void> {
    const { target: backend, threads, store, db } = this.d;
    let thread: ThreadRow | undefined;
    if (row.threadRoot) {
      thread = threads.get(row.roomId, row.threadRoot);
      if (thread?.backend !== backend.name) throw new Unfireable(`there is no OpenCode session thread with root ${row.threadRoot} in this room`);
    } else if (row.sessionId) {
      thread = threads.bySession(backend.name, row.sessionId).find((t) => t.roomId === row.roomId);
    }
    // The message first (idempotent by transaction id), remembered at once so a retry reuses it.
    let marker = row.markerEventId;
    if (!marker) {
      marker = await this.put(row.roomId, occurrenceTxnId(row), promptMessage(row, thread?.rootEventId ?? row.threadRoot ?? undefined));
      store.setMarker(row.id, marker);
    }
    if (row.notifyOnly) {
      store.fired(row.id, this.nextDue(row));
      return;
    }
    let newThread: Parameters<ThreadStore["insert"]>[0] | undefined;
    if (!thread) {
      thread = threads.get(row.roomId, marker); // an earlier attempt got this far
      if (!thread) {
        const directory = backend.roomDirectory(row.roomId);
        const sessionId = row.sessionId ?? (await backend.createSessionFor(titleFrom(row.text), directory, row.roomId));
        const server = backend.threadServerOf?.(row.roomId) ?? null;
        newThread = { roomId: row.roomId, rootEventId: marker, backend: backend.name, sessionId, title: titleFrom(row.text), startedBy: row.createdBy, directory, server };
      }
    }
    const req = { roomId: row.roomId, eventId: marker, sender: "", text: `[${row.createdBy}] ${row.text}` };
    const target = db.transaction(() => {
      const t = thread ?? threads.insert(newThread!);
      backend.enqueue(t, req);
      store.fired(row.id, this.nextDue(row));
      return t;
    })();
    await backend.sendNext(target.sessionId);
  }

  /** Sends with our own transaction id, which the homeserver uses to drop a repeated send. */
  private put(roomId: string, txnId: string, content: MessageContent): Promise<string> {
    return this.d.sender.send(roomId, content, { txnId });
  }
}
