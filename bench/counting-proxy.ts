// A loopback HTTP proxy that sits between the bot and Synapse and counts what goes through:
// requests by method and path shape, answers by status, 429s. It runs in its own process
// (`node bench/counting-proxy.ts <target>`), so that a busy benchmark process does not delay
// the bot's requests; the benchmark reads and resets the counters over `/_bench/*`.
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

export interface ProxyStats {
  /** Requests forwarded since the last reset. */
  requests: number;
  /** Answers with status 429 (M_LIMIT_EXCEEDED). */
  rateLimited: number;
  /** Requests the upstream did not answer (connection errors). */
  failed: number;
  /** "METHOD /path/:shape" → count. */
  byRoute: Record<string, number>;
  /** "200", "429", ... → count. */
  byStatus: Record<string, number>;
  /** Summed upstream time per route (ms), to see where the homeserver's time goes. */
  msByRoute: Record<string, number>;
  /** Epoch ms of the last reset. */
  since: number;
}

/** One event the bot sent (PUT …/send/…), with when it passed the proxy (epoch ms, sub-ms precision). */
export interface SendRecord {
  route: string;
  /** Request arrived at the proxy. */
  start: number;
  /** Synapse's answer arrived at the proxy. */
  end: number;
  status: number;
  eventId?: string;
}

/** Epoch ms with sub-millisecond precision; comparable across processes on one machine. */
export const epochNow = (): number => performance.timeOrigin + performance.now();

const CONTROL = "/_bench/";

/** `/_matrix/client/v3/rooms/!r:hs/send/m.room.message/txn1?x` → `/v3/rooms/:room/send/m.room.message/:txn`. */
export function routeOf(rawPath: string): string {
  const path = rawPath.split("?")[0] ?? "";
  const segs = path.replace(/^\/_matrix\/client\//, "/").replace(/^\/_matrix\//, "/").split("/");
  const out: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    const s = decodeURIComponent(segs[i] ?? "");
    const prev = out[out.length - 1];
    const prev2 = out[out.length - 2];
    if (/^[!@$#]/.test(s)) out.push(s[0] === "!" ? ":room" : s[0] === "@" ? ":user" : s[0] === "$" ? ":event" : ":alias");
    else if (prev2 === "send" && prev !== undefined) out.push(":txn");
    else if (prev2 === "redact" && prev === ":event") out.push(":txn");
    else if (prev === "sendToDevice" && i === segs.length - 1) out.push(":txn");
    else out.push(s);
  }
  return out.join("/");
}

export interface CountingProxy {
  url: string;
  stats(): ProxyStats;
  reset(): void;
  close(): Promise<void>;
}

/** In-process proxy (the CLI below runs this in a child process). */
export async function startCountingProxy(target: string, port = 0): Promise<CountingProxy> {
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  let stats = fresh();
  let sends: SendRecord[] = [];
  function fresh(): ProxyStats {
    return { requests: 0, rateLimited: 0, failed: 0, byRoute: {}, byStatus: {}, msByRoute: {}, since: Date.now() };
  }
  const server = http.createServer((req, res) => {
    const url = req.url ?? "/";
    if (url.startsWith(CONTROL)) {
      const current = stats;
      if (url === `${CONTROL}reset`) [stats, sends] = [fresh(), []];
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(url === `${CONTROL}sends` ? sends : current));
      return;
    }
    const route = `${req.method ?? "?"} ${routeOf(url)}`;
    const counted = stats; // a reset while the request is in flight must not mix the two periods
    counted.requests++;
    counted.byRoute[route] = (counted.byRoute[route] ?? 0) + 1;
    const t0 = performance.now();
    const start = epochNow();
    const isSend = req.method === "PUT" && route.includes("/send/");
    const headers = { ...req.headers, host: upstream.host };
    const up = http.request(
      { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, method: req.method, path: url, headers, agent },
      (upRes) => {
        const status = upRes.statusCode ?? 0;
        counted.byStatus[String(status)] = (counted.byStatus[String(status)] ?? 0) + 1;
        if (status === 429) counted.rateLimited++;
        res.writeHead(status, upRes.headers);
        upRes.pipe(res);
        const chunks: Buffer[] = [];
        if (isSend) upRes.on("data", (c: Buffer) => chunks.push(c));
        upRes.on("end", () => {
          counted.msByRoute[route] = (counted.msByRoute[route] ?? 0) + (performance.now() - t0);
          if (!isSend || sends.length >= 100_000) return;
          const rec: SendRecord = { route, start, end: epochNow(), status };
          const id = /"event_id"\s*:\s*"([^"]+)"/.exec(Buffer.concat(chunks).toString("utf8"))?.[1];
          if (id) rec.eventId = id;
          sends.push(rec);
        });
      },
    );
    up.on("error", () => {
      counted.failed++;
      if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ errcode: "M_UNKNOWN", error: "bench proxy: upstream failed" }));
    });
    // The client gave up (an aborted long-poll sync): stop the upstream request too.
    res.on("close", () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    stats: () => structuredClone(stats),
    reset: () => {
      stats = fresh();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      }),
  };
}

/** The proxy in a child process, controlled over HTTP. */
export class ProxyProcess {
  readonly url: string;
  private readonly child: ChildProcess;

  private constructor(child: ChildProcess, url: string) {
    this.child = child;
    this.url = url;
  }

  static async start(target: string): Promise<ProxyProcess> {
    const child = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", fileURLToPath(import.meta.url), target], {
      // stdin stays open as a lifeline: the proxy exits when the benchmark process dies.
      stdio: ["pipe", "pipe", "inherit"],
    });
    const url = await new Promise<string>((resolve, reject) => {
      let buf = "";
      child.once("exit", (code) => reject(new Error(`counting proxy exited with ${code}`)));
      child.stdout?.on("data", (chunk: Buffer) => {
        buf += chunk.toString("utf8");
        const m = /"listening":"([^"]+)"/.exec(buf);
        if (m?.[1]) resolve(m[1]);
      });
    });
    return new ProxyProcess(child, url);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  async stats(): Promise<ProxyStats> {
    return (await (await fetch(`${this.url}${CONTROL}stats`)).json()) as ProxyStats;
  }

  /** The bot's sends since the last reset. */
  async sends(): Promise<SendRecord[]> {
    return (await (await fetch(`${this.url}${CONTROL}sends`)).json()) as SendRecord[];
  }

  /** Returns the counters of the period that ends, and starts a new one. */
  async reset(): Promise<ProxyStats> {
    return (await (await fetch(`${this.url}${CONTROL}reset`)).json()) as ProxyStats;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.stdin?.end();
    this.child.kill("SIGTERM");
    await exited;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write("usage: node bench/counting-proxy.ts <upstream-url> [port]\n");
    process.exit(2);
  }
  const proxy = await startCountingProxy(target, Number(process.argv[3] ?? 0));
  process.stdout.write(`${JSON.stringify({ listening: proxy.url })}\n`);
  const stop = (): void => void proxy.close().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.resume();
}
