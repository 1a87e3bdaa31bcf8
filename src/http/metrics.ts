import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

export type TurnOutcome = "done" | "failed";
export type NotifyOutcome = "posted" | "skipped" | "rejected" | "failed";

/** Live values the bot already keeps; read each time /metrics is scraped. */
export interface MetricSources {
  /** MatrixSender.counters: monotonic request and edit counts. */
  sendCounters?: { requests: number; edits: number };
  /** Sessions with a turn being streamed right now. */
  activeSessions?: () => number;
  /** Each OpenCode server: connected or not, and its turns streaming now (label `server`). */
  opencodeServers?: () => Array<{ server: string; up: boolean; activeTurns: number }>;
  /** Homeserver requests waiting for one of the bot's slots, per lane (RequestLanes.queued): where the wait is under load. */
  matrixWaiting?: () => Record<string, number>;
}

/** A counter that follows a monotonic number kept elsewhere (it only ever adds the difference). */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number | undefined): Counter {
  let seen = 0;
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now !== undefined && now > seen) {
        this.inc(now - seen);
        seen = now;
      }
    },
  });
}

/**
 * The bot's Prometheus metrics, in a registry of its own (not prom-client's global one, so
 * that two bots or a test in one process do not share counts).
 */
export class BotMetrics {
  readonly registry = new Registry();
  private sources: MetricSources = {};
  private readonly turns: Counter<"outcome">;
  private readonly rateLimitedCounter: Counter;
  private readonly reconnects: Counter<"server">;
  private readonly notifications: Counter<"outcome">;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.turns = new Counter({ name: "bot_turns_total", help: "Agent turns finished, by outcome", labelNames: ["outcome"], registers });
    for (const outcome of ["done", "failed"] satisfies TurnOutcome[]) this.turns.inc({ outcome }, 0);
    mirroredCounter(this.registry, "bot_matrix_requests_total", "Write requests sent to the homeserver (sends, edits, reactions, redactions; retries included)", () => this.sources.sendCounters?.requests);
    mirroredCounter(this.registry, "bot_matrix_edits_total", "Message edits (m.replace) sent to the homeserver", () => this.sources.sendCounters?.edits);
    this.rateLimitedCounter = new Counter({ name: "bot_matrix_rate_limited_total", help: "Homeserver answers of 429 / M_LIMIT_EXCEEDED", registers });
    const servers = (): Array<{ server: string; up: boolean; activeTurns: number }> => this.sources.opencodeServers?.() ?? [];
    this.reconnects = new Counter({
      name: "bot_opencode_reconnects_total",
      help: "Times an OpenCode server's event stream was connected again after it was lost",
      labelNames: ["server"],
      registers,
      collect() {
        for (const s of servers()) this.inc({ server: s.server }, 0); // every server's count is there from the start
      },
    });
    this.notifications = new Counter({ name: "bot_notify_requests_total", help: "POST /notify requests, by outcome", labelNames: ["outcome"], registers });
    for (const outcome of ["posted", "skipped", "rejected", "failed"] satisfies NotifyOutcome[]) this.notifications.inc({ outcome }, 0);
    const sources = (): MetricSources => this.sources;
    new Gauge({
      name: "bot_active_sessions",
      help: "Sessions whose turn the bot is streaming into Matrix right now",
      registers,
      collect() {
        this.set(sources().activeSessions?.() ?? 0);
      },
    });
    new Gauge({
      name: "bot_opencode_up",
      help: "1 while the bot is connected to the OpenCode server's event stream, else 0",
      labelNames: ["server"],
      registers,
      collect() {
        this.reset();
        for (const s of servers()) this.set({ server: s.server }, s.up ? 1 : 0);
      },
    });
    new Gauge({
      name: "bot_opencode_active_turns",
      help: "Turns the bot is streaming from the OpenCode server right now",
      labelNames: ["server"],
      registers,
      collect() {
        this.reset();
        for (const s of servers()) this.set({ server: s.server }, s.activeTurns);
      },
    });
    new Gauge({
      name: "bot_matrix_requests_waiting",
      help: "Homeserver requests waiting for a slot, by lane (alarm, urgent, first, edit, background)",
      labelNames: ["lane"],
      registers,
      collect() {
        for (const [lane, n] of Object.entries(sources().matrixWaiting?.() ?? {})) this.set({ lane }, n);
      },
    });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Connects the live values once the parts that hold them exist. */
  observe(sources: MetricSources): void {
    this.sources = { ...this.sources, ...sources };
  }

  turnEnded(outcome: TurnOutcome): void {
    this.turns.inc({ outcome });
  }

  rateLimited(): void {
    this.rateLimitedCounter.inc();
  }

  /** `server`: the OpenCode server's name in opencode.servers (`default`: that of opencode.serverUrl or the embedded one). */
  opencodeReconnected(server = "default"): void {
    this.reconnects.inc({ server });
  }

  notified(outcome: NotifyOutcome): void {
    this.notifications.inc({ outcome });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
