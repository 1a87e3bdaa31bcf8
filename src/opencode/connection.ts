import { createOpencodeClient, type Event, type OpencodeClient } from "@opencode-ai/sdk/v2";
import type { Logger } from "../log.ts";
import { basicAuthHeaders } from "./server-auth.ts";
import { timedFetch } from "./timed-fetch.ts";

export type ConnectionState = "connecting" | "connected" | "disconnected";

export interface ConnectionOptions {
  url: string;
  directory: string;
  healthCheckIntervalMs: number;
  maxRetries: number;
  retryDelayMs: number;
  /** Longest wait for an answer to a request (not the event stream): see timed-fetch.ts. */
  requestTimeoutMs: number;
  /** Basic auth; with only a password the user name is OpenCode's default, "opencode". */
  username?: string | undefined;
  password?: string | undefined;
  log: Logger;
}

/** How long the event stream may stay silent before a failed health check counts. */
const silenceLimitMs = 25_000;

type EventHandler = (event: Event, directory: string) => void;
type StateHandler = (state: ConnectionState, detail: { attempt: number; error?: string }) => void;

/**
 * One OpenCode server: an SDK client and the server's single global event stream, kept open
 * across server restarts. Reconnects quickly `maxRetries` times (delay doubling from
 * `retryDelayMs`), then keeps trying every `healthCheckIntervalMs` for as long as it takes.
 */
export class OpencodeConnection {
  readonly url: string;
  readonly client: OpencodeClient;
  state: ConnectionState = "connecting";
  reconnects = 0;
  lastError: string | undefined;
  private readonly opts: ConnectionOptions;
  private readonly eventHandlers: EventHandler[] = [];
  private readonly stateHandlers: StateHandler[] = [];
  private readonly goneHandlers: Array<() => void> = [];
  private stopped = false;
  private lastEventAt = 0;
  private abort: AbortController | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** Set by resubscribe(): the next attempt goes without the retry delay. */
  private immediate = false;
  private readonly connectWaiters = new Set<() => void>();

  constructor(opts: ConnectionOptions) {
    this.opts = opts;
    this.url = opts.url;
    this.client = createOpencodeClient({ baseUrl: opts.url, directory: opts.directory, headers: this.authHeaders(), fetch: timedFetch(opts.requestTimeoutMs) });
  }

  onEvent(h: EventHandler): void {
    this.eventHandlers.push(h);
  }

  onState(h: StateHandler): void {
    this.stateHandlers.push(h);
  }

  /** Called when a reconnect attempt finds nothing listening: the server is down, not slow. */
  onGone(h: () => void): void {
    this.goneHandlers.push(h);
  }

  /** `justChecked`: the caller has just seen the server answer its health check; the first subscribe skips it. */
  start(opts: { justChecked?: boolean } = {}): void {
    this.loop = this.run(opts.justChecked === true);
    this.healthTimer = setInterval(() => void this.checkHealth(), this.opts.healthCheckIntervalMs);
    this.healthTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.abort?.abort();
    this.wake?.();
    await this.loop;
  }

  /**
   * Drops the event stream and subscribes again at once, e.g. after the server was restarted.
   * Resolves true once connected again, false after `timeoutMs`.
   */
  resubscribe(timeoutMs = 30_000): Promise<boolean> {
    const connected = this.waitConnected(timeoutMs, true);
    this.immediate = true;
    this.abort?.abort();
    this.wake?.();
    return connected;
  }

  /** Resolves true when connected (at once if so, unless `next`: the next connect), false after `timeoutMs`. */
  waitConnected(timeoutMs: number, next = false): Promise<boolean> {
    if (!next && this.state === "connected") return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.connectWaiters.delete(done);
        resolve(false);
      }, timeoutMs);
      this.connectWaiters.add(done);
    });
  }

  /** True when the server answers its health endpoint. */
  async healthy(timeoutMs = 2000): Promise<boolean> {
    return (await this.probe(timeoutMs)) === "ok";
  }

  /** `refused`: nothing listens at the address (the server is gone, not slow). */
  private async probe(timeoutMs: number): Promise<"ok" | "refused" | "failed"> {
    try {
      const res = await fetch(new URL("/global/health", this.url), { signal: AbortSignal.timeout(timeoutMs), headers: this.authHeaders() });
      return res.ok ? "ok" : "failed";
    } catch (err) {
      return (err as { cause?: { code?: string } }).cause?.code === "ECONNREFUSED" ? "refused" : "failed";
    }
  }

  private authHeaders(): Record<string, string> {
    return basicAuthHeaders({ username: this.opts.username, password: this.opts.password });
  }

  /**
   * A server that hangs may leave the stream open but silent: drop it and reconnect. A busy
   * server answers its health endpoint slowly while its stream flows fine, so a failed check
   * alone is no reason; the stream must also have been silent past two heartbeats (OpenCode
   * sends `server.heartbeat` every 10 s).
   */
  private async checkHealth(): Promise<void> {
    if (this.state !== "connected") return;
    if (Date.now() - this.lastEventAt < silenceLimitMs) return;
    if (!(await this.healthy(5000)) && Date.now() - this.lastEventAt >= silenceLimitMs) {
      this.opts.log.warn({ url: this.url, silentMs: Date.now() - this.lastEventAt }, "OpenCode is silent and fails its health check; reconnecting");
      this.abort?.abort();
    }
  }

  private setState(state: ConnectionState, attempt: number, error?: string): void {
    if (this.state === state) return;
    this.state = state;
    if (state === "connected") {
      for (const w of this.connectWaiters) w();
      this.connectWaiters.clear();
    }
    for (const h of this.stateHandlers) h(state, error === undefined ? { attempt } : { attempt, error });
  }

  private async run(justChecked: boolean): Promise<void> {
    let failures = 0;
    let skipProbe = justChecked;
    while (!this.stopped) {
      this.abort = new AbortController();
      const abort = this.abort;
      // A server that is still starting accepts connections but may not answer them for
      // seconds: subscribe only once it answers its health check, and give up on a stream
      // that stays silent (the server sends server.connected at once).
      const watchdog = setTimeout(() => abort.abort(), 20_000);
      try {
        // Once it has failed, a shorter probe: a server still starting may take a probe and never
        // answer it, and 8 s lost to such a probe (plus the wait after it) keeps threads waiting.
        const probe = skipProbe ? "ok" : await this.probe(failures === 0 ? 8000 : 3000);
        skipProbe = false;
        // A lost stream whose server now refuses connections is an outage, not a blip: said at once.
        if (probe === "refused" && failures > 0) for (const h of this.goneHandlers) h();
        if (probe !== "ok") throw new Error(probe === "refused" ? "connection refused" : "health check failed");
        const { stream } = await this.client.global.event({ signal: abort.signal, sseMaxRetryAttempts: 1 });
        for await (const global of stream) {
          clearTimeout(watchdog);
          this.lastEventAt = Date.now();
          if (this.state !== "connected") {
            if (failures > 0 || this.reconnects > 0) this.reconnects++;
            failures = 0;
            this.lastError = undefined;
            this.setState("connected", 0);
          }
          this.dispatch(global as { directory?: string; payload?: Event });
        }
        if (!this.stopped) this.lastError = "event stream ended";
      } catch (err) {
        this.lastError = (err as Error).message;
      } finally {
        clearTimeout(watchdog);
      }
      if (this.stopped) break;
      failures++;
      this.setState("disconnected", failures, this.lastError);
      const quick = failures <= this.opts.maxRetries;
      const delay = this.immediate ? 0 : quick ? this.opts.retryDelayMs * 2 ** (failures - 1) : this.opts.healthCheckIntervalMs;
      this.immediate = false;
      this.opts.log.warn({ url: this.url, attempt: failures, delayMs: delay, error: this.lastError }, "OpenCode event stream lost; retrying");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  private dispatch(global: { directory?: string; payload?: Event }): void {
    const event = global.payload;
    // Some stream messages (e.g. `sync`) carry no properties; no handler wants those.
    if (!event || typeof event.type !== "string" || typeof event.properties !== "object" || event.properties === null) return;
    for (const h of this.eventHandlers) {
      try {
        h(event, global.directory ?? "");
      } catch (err) {
        this.opts.log.error({ err, type: event.type }, "event handler failed");
      }
    }
  }
}
