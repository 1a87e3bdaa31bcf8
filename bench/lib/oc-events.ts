// The benchmark's own subscription to OpenCode's global event stream: when each text delta
// was emitted (as seen by a second subscriber next to the bot) and when each session went idle.
import { createOpencodeClient, type Event } from "@opencode-ai/sdk/v2";

export interface DeltaMark {
  /** performance.now() in the benchmark process when the delta arrived. */
  at: number;
  /** Length of the part's text including this delta. */
  length: number;
}

export interface PartRecord {
  sessionId: string;
  messageId: string;
  partId: string;
  field: string;
  text: string;
  deltas: DeltaMark[];
}

export interface SessionMarks {
  busyAt?: number;
  /** First idle after the session was busy. */
  idleAt?: number;
}

export class OpencodeEventRecorder {
  readonly parts = new Map<string, PartRecord>();
  readonly sessions = new Map<string, SessionMarks>();
  events = 0;
  disconnects = 0;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private connected: Promise<void>;
  private onConnected: () => void = () => {};

  private readonly url: string;
  private readonly directory: string;

  constructor(url: string, directory: string) {
    this.url = url;
    this.directory = directory;
    this.connected = new Promise((r) => (this.onConnected = r));
  }

  /**
   * With `reconnect`, a stream that ends (the server was killed) is opened again every 250 ms
   * until stop(): a server that comes back is followed again. `disconnects` counts the ends. An
   * attempt that gets no first event (OpenCode sends `server.connected` at once) within 2 s is
   * given up: one opened while the server was starting can hang for good.
   */
  async start(opts: { reconnect?: boolean } = {}): Promise<void> {
    const client = createOpencodeClient({ baseUrl: this.url, directory: this.directory });
    const follow = async (): Promise<void> => {
      const attempt = new AbortController();
      const signal = AbortSignal.any([this.abort.signal, attempt.signal]);
      let first = false;
      const timer = opts.reconnect ? setTimeout(() => first || attempt.abort(), 2000) : undefined;
      try {
        const { stream } = await client.global.event({ signal, sseMaxRetryAttempts: 1 });
        for await (const g of stream) {
          first = true;
          this.onConnected();
          const event = (g as { payload?: Event }).payload;
          if (event) this.apply(event, performance.now());
        }
      } finally {
        clearTimeout(timer);
      }
    };
    this.loop = (async () => {
      for (;;) {
        try {
          await follow();
        } catch (err) {
          if (!this.abort.signal.aborted && !opts.reconnect) throw err;
        }
        if (this.abort.signal.aborted || !opts.reconnect) return;
        this.disconnects++;
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    await Promise.race([this.connected, this.loop]);
  }

  private session(id: string): SessionMarks {
    let s = this.sessions.get(id);
    if (!s) this.sessions.set(id, (s = {}));
    return s;
  }

  private apply(event: Event, at: number): void {
    this.events++;
    switch (event.type) {
      case "message.part.delta": {
        const { sessionID, messageID, partID, field, delta } = event.properties;
        let p = this.parts.get(partID);
        if (!p) this.parts.set(partID, (p = { sessionId: sessionID, messageId: messageID, partId: partID, field, text: "", deltas: [] }));
        p.text += delta;
        p.deltas.push({ at, length: p.text.length });
        return;
      }
      case "session.status": {
        const s = this.session(event.properties.sessionID);
        if (event.properties.status.type === "busy") s.busyAt ??= at;
        else if (event.properties.status.type === "idle" && s.busyAt !== undefined) s.idleAt ??= at;
        return;
      }
      case "session.idle": {
        const s = this.session(event.properties.sessionID);
        if (s.busyAt !== undefined) s.idleAt ??= at;
        return;
      }
      default:
    }
  }

  /** Text parts of a session, in the order they started. */
  partsOf(sessionId: string): PartRecord[] {
    return [...this.parts.values()].filter((p) => p.sessionId === sessionId && p.field === "text");
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop?.catch(() => undefined);
  }
}
