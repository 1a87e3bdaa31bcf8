import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A push gateway for tests: what a phone's push provider would get from the homeserver. It
 * implements the Push Gateway API's one endpoint, `POST /_matrix/push/v1/notify`, on loopback,
 * and records each notification. A test registers an HTTP pusher (kind `http`) pointing at
 * `url` for a user (see `MatrixTestUser.setHttpPusher`), and the test Synapse, which may push
 * to 127.0.0.1 (`ip_range_whitelist`), sends that user's notifications here, after its push
 * rules decided what notifies and with which tweaks (highlight, sound).
 */

export interface PushDevice {
  app_id: string;
  pushkey: string;
  pushkey_ts?: number;
  data?: Record<string, unknown>;
  tweaks?: { highlight?: boolean; sound?: string; [k: string]: unknown };
}

/** One notification as the spec defines it; badge-only updates carry no `event_id`. */
export interface PushNotification {
  event_id?: string;
  room_id?: string;
  type?: string;
  sender?: string;
  sender_display_name?: string;
  room_name?: string;
  prio?: "high" | "low";
  content?: Record<string, unknown>;
  counts?: { unread?: number; missed_calls?: number };
  devices: PushDevice[];
  /** performance.now() when the gateway got it. */
  receivedAt: number;
}

export class PushGateway {
  private server: http.Server | undefined;
  private readonly received: PushNotification[] = [];
  private readonly listeners = new Set<() => void>();
  /** Requests that were not a valid notify call (wrong path, bad JSON): a test can assert there were none. */
  readonly refused: string[] = [];

  static async start(): Promise<PushGateway> {
    const g = new PushGateway();
    await g.up();
    return g;
  }

  /** The pusher's `data.url`: Synapse requires exactly this path. */
  get url(): string {
    return `http://127.0.0.1:${(this.server?.address() as AddressInfo).port}/_matrix/push/v1/notify`;
  }

  private async up(): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const answer = (status: number, body: unknown): void => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify(body));
        };
        if (req.method !== "POST" || req.url !== "/_matrix/push/v1/notify") {
          this.refused.push(`${req.method ?? "?"} ${req.url ?? "?"}`);
          answer(404, { errcode: "M_UNRECOGNIZED", error: "not a push gateway endpoint" });
          return;
        }
        let n: Omit<PushNotification, "receivedAt"> | undefined;
        try {
          n = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { notification?: Omit<PushNotification, "receivedAt"> }).notification;
        } catch {
          n = undefined;
        }
        if (!n || !Array.isArray(n.devices)) {
          this.refused.push("a notify call without a notification");
          answer(400, { errcode: "M_BAD_JSON", error: "no notification" });
          return;
        }
        this.received.push({ ...n, receivedAt: performance.now() });
        for (const l of [...this.listeners]) l();
        // Nothing is rejected: a rejected pushkey makes Synapse delete the pusher.
        answer(200, { rejected: [] });
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  /** Every notification so far, oldest first. */
  all(): PushNotification[] {
    return [...this.received];
  }

  /** Notifications about events (not badge updates) for one pushkey, i.e. one person's phone. */
  forPushkey(pushkey: string): PushNotification[] {
    return this.received.filter((n) => n.event_id !== undefined && n.devices.some((d) => d.pushkey === pushkey));
  }

  /** Waits for a notification for `pushkey` that `match` accepts. */
  waitFor(pushkey: string, match: (n: PushNotification) => boolean, opts: { timeoutMs?: number; description?: string } = {}): Promise<PushNotification> {
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const find = (): PushNotification | undefined => this.forPushkey(pushkey).find(match);
    const found = find();
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const listener = (): void => {
        const n = find();
        if (!n) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(n);
      };
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        const seen = this.forPushkey(pushkey).slice(-8).map((x) => `  ${x.type ?? "?"} ${x.sender ?? "?"} ${JSON.stringify(x.content?.body ?? null)}`);
        reject(new Error(`push gateway: no notification for ${pushkey}${opts.description ? ` (${opts.description})` : ""} within ${timeoutMs} ms. `
          + `Last ones for it:\n${seen.join("\n") || "  (none)"}`));
      }, timeoutMs);
      this.listeners.add(listener);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}
