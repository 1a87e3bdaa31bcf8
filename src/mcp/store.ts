import { createHash, randomBytes } from "node:crypto";
import type { Db } from "../store/db.ts";

const hash = (token: string): string => createHash("sha256").update(token, "utf8").digest("hex");

export interface McpAgent {
  agentId: string;
  url: string;
  registeredBy: string;
  registeredAt: number;
}

/**
 * The secrets of the agents that may call the bot's MCP tools (migrations/009_mcp.sql). Only a
 * hash is kept: the token itself goes to Letta once, as the agent's secret, and never into a log.
 */
export class McpAgentStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** A new secret for the agent (an older one stops working); returns the token to hand to Letta. */
  issue(agentId: string, url: string, by: string, now = Date.now()): string {
    const token = `mab_${randomBytes(32).toString("base64url")}`;
    this.db
      .prepare(
        `INSERT INTO mcp_agents (agent_id, token_hash, url, registered_by, registered_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash, url = excluded.url,
           registered_by = excluded.registered_by, registered_at = excluded.registered_at`,
      )
      .run(agentId, hash(token), url, by, now);
    return token;
  }

  /** The agent a presented token belongs to (looked up by hash: a constant-time compare is not needed). */
  agentOf(token: string): string | undefined {
    const r = this.db.prepare("SELECT agent_id FROM mcp_agents WHERE token_hash = ?").get(hash(token)) as { agent_id: string } | undefined;
    return r?.agent_id;
  }

  get(agentId: string): McpAgent | undefined {
    const r = this.db.prepare("SELECT * FROM mcp_agents WHERE agent_id = ?").get(agentId) as
      | { agent_id: string; url: string; registered_by: string; registered_at: number }
      | undefined;
    return r && { agentId: r.agent_id, url: r.url, registeredBy: r.registered_by, registeredAt: r.registered_at };
  }

  all(): McpAgent[] {
    return (this.db.prepare("SELECT agent_id FROM mcp_agents ORDER BY registered_at").all() as Array<{ agent_id: string }>).map((r) => this.get(r.agent_id) as McpAgent);
  }

  setUrl(agentId: string, url: string): void {
    this.db.prepare("UPDATE mcp_agents SET url = ? WHERE agent_id = ?").run(url, agentId);
  }
}

/** Rooms that turned delegation on or off against the configured default. */
export class McpRoomStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  get(roomId: string): { on: boolean; setBy: string } | undefined {
    const r = this.db.prepare("SELECT delegate, set_by FROM mcp_rooms WHERE room_id = ?").get(roomId) as { delegate: number; set_by: string } | undefined;
    return r && { on: r.delegate === 1, setBy: r.set_by };
  }

  set(roomId: string, on: boolean, by: string, now = Date.now()): void {
    this.db
      .prepare(
        `INSERT INTO mcp_rooms (room_id, delegate, set_by, set_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (room_id) DO UPDATE SET delegate = excluded.delegate, set_by = excluded.set_by, set_at = excluded.set_at`,
      )
      .run(roomId, on ? 1 : 0, by, now);
  }
}
