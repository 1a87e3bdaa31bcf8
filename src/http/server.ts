import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log.ts";

export interface HealthReport {
  ok: boolean;
  [component: string]: unknown;
}

export interface HttpDeps {
  host: string;
  port: number;
  log: Logger;
  health: () => Promise<HealthReport>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** The bot's own HTTP endpoints. Unknown paths and methods get a 404/405 with a reason. */
export async function startHttpServer(deps: HttpDeps): Promise<{ server: Server; port: number; close: () => Promise<void> }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/health") {
      if (req.method !== "GET" && req.method !== "HEAD") return json(res, 405, { error: "use GET /health" });
      deps
        .health()
        .then((report) => json(res, report.ok ? 200 : 503, report))
        .catch((err: unknown) => json(res, 503, { ok: false, error: (err as Error).message }));
      return;
    }
    json(res, 404, { error: `no such endpoint: ${req.method ?? "?"} ${path ?? ""}`, endpoints: ["GET /health"] });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(deps.port, deps.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  deps.log.info({ host: deps.host, port }, "HTTP endpoints listening");
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
