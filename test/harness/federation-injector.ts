import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A pass-through between the bot and Synapse that can add events to the bot's next /sync
 * response, as if another homeserver had sent them over federation. Synapse checks events its
 * own users send (a reaction must relate to an event of the same room), but it relays what a
 * remote server signs without such checks: this is how a test shows the bot what a hostile
 * server could deliver, against the real homeserver for everything else.
 */
export class FederationInjector {
  private readonly upstream: URL;
  private server: http.Server | undefined;
  private pending: Array<{ roomId: string; event: Record<string, unknown> }> = [];
  /** Injected events the bot's sync has received. */
  delivered = 0;

  constructor(upstream: string) {
    this.upstream = new URL(upstream);
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server?.address() as AddressInfo).port}`;
  }

  /** Queues an event for the room's timeline in the bot's next sync. Returns its (made-up) event id. */
  inject(roomId: string, event: { type: string; sender: string; content: Record<string, unknown> }): string {
    const eventId = `$injected-${Date.now().toString(36)}-${this.pending.length}`;
    this.pending.push({ roomId, event: { ...event, event_id: eventId, origin_server_ts: Date.now(), unsigned: {} } });
    return eventId;
  }

  async up(): Promise<void> {
    const server = http.createServer((req, res) => {
      const isSync = req.method === "GET" && /^\/_matrix\/client\/[^/]+\/sync(\?|$)/.test(req.url ?? "");
      // Plain bodies, so that a sync response can be read and rewritten.
      const headers = { ...req.headers, host: this.upstream.host, "accept-encoding": "identity" };
      const upstream = http.request({ host: this.upstream.hostname, port: this.upstream.port, method: req.method, path: req.url, headers }, (up) => {
        if (!isSync || up.statusCode !== 200 || this.pending.length === 0) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        up.on("data", (c: Buffer) => chunks.push(c));
        up.on("end", () => {
          const body = this.addPending(Buffer.concat(chunks).toString("utf8"));
          const { "content-length": _length, "transfer-encoding": _chunked, ...rest } = up.headers;
          res.writeHead(200, { ...rest, "content-length": Buffer.byteLength(body) });
          res.end(body);
        });
      });
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  private addPending(text: string): string {
    type Sync = { rooms?: { join?: Record<string, { timeline?: { events?: unknown[] } }> } };
    const sync = JSON.parse(text) as Sync;
    for (const [i, { roomId, event }] of this.pending.entries()) {
      const join = ((sync.rooms ??= {}).join ??= {});
      const timeline = ((join[roomId] ??= {}).timeline ??= {});
      // Before the room's real events (what the test sends after injecting), in the order injected.
      (timeline.events ??= []).splice(i, 0, event);
      this.delivered++;
    }
    this.pending = [];
    return JSON.stringify(sync);
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}
