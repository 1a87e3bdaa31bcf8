import type { IncomingMessage, ServerResponse } from "node:http";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { Logger } from "../log.ts";

const maxBodyBytes = 1024 * 1024;

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > maxBodyBytes) {
        req.pause();
        resolve(undefined);
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks, size)));
    req.on("error", reject);
  });
}

export interface McpHttpDeps {
  /** The agent a bearer token belongs to; undefined for a token the bot did not issue. */
  agentOf: (token: string) => string | undefined;
  /** A server whose tools act for that agent. */
  serverFor: (agentId: string) => McpServer;
  log: Logger;
}

const challenge = (error?: string): Record<string, string> => ({ "www-authenticate": `Bearer realm="mcp"${error ? `, error="${error}"` : ""}` });

/**
 * POST /mcp: MCP's streamable HTTP transport, stateless (each request is a whole exchange;
 * answers are plain JSON). The bearer token is an agent's own secret: it names the agent, and
 * with it the thread the call belongs to. Tokens are never logged.
 */
export function mcpHandler(d: McpHttpDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    if (req.method !== "POST") {
      // No server-initiated stream and no sessions to end: every exchange is one POST.
      return json(res, 405, { error: `method ${req.method ?? "?"} is not allowed on /mcp: use POST` }, { allow: "POST" });
    }
    const h = req.headers.authorization;
    const m = h === undefined ? undefined : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h);
    if (!m?.[1]) {
      d.log.info({ path: "/mcp", status: 401, reason: h === undefined ? "no token" : "malformed Authorization" }, "HTTP request refused");
      return json(res, 401, { error: "missing token: send Authorization: Bearer <the agent's MATRIX_BOT_MCP_TOKEN>" }, challenge());
    }
    const agentId = d.agentOf(m[1]);
    if (agentId === undefined) {
      d.log.info({ path: "/mcp", status: 401, reason: "unknown token" }, "HTTP request refused");
      return json(res, 401, { error: "wrong token" }, challenge("invalid_token"));
    }
    const raw = await readBody(req);
    if (raw === undefined) return json(res, 413, { error: `body too large: the limit is ${maxBodyBytes} bytes` }, { connection: "close" });
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch (err) {
      return json(res, 400, { jsonrpc: "2.0", id: null, error: { code: -32700, message: `Parse error: ${(err as Error).message}` } });
    }
    const server = d.serverFor(agentId);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on("close", () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  };
}
