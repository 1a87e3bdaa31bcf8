-- Letta agents that may reach OpenCode through the bot's MCP endpoint (/mcp). Each has a secret
-- of its own, kept here only as a SHA-256 hash: a call's bearer token names its agent.
CREATE TABLE mcp_agents (
  agent_id TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  -- The endpoint URL the agent was given (refreshed when the bot's address changes).
  url TEXT NOT NULL,
  registered_by TEXT NOT NULL,
  registered_at INTEGER NOT NULL
);

-- Rooms whose moderators turned delegation to OpenCode on or off (`!letta delegate on|off`);
-- rooms without a row follow letta.delegateToOpencode.
CREATE TABLE mcp_rooms (
  room_id TEXT PRIMARY KEY,
  delegate INTEGER NOT NULL CHECK (delegate IN (0, 1)),
  set_by TEXT NOT NULL,
  set_at INTEGER NOT NULL
);

-- OpenCode sessions a Letta agent started or prompted (opencode_run_task / opencode_send_message):
-- the Letta thread their work streams into, who asked, and whether the result of the last task
-- reached the agent — as the tool's result, or (when the call was cut off, e.g. by a restart) as
-- a message in the thread. A result is delivered once: `delivered` is claimed before it is sent.
CREATE TABLE mcp_delegations (
  session_id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  agent_name TEXT NOT NULL,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  headline_event_id TEXT NOT NULL,
  prompted_by TEXT NOT NULL,
  title TEXT NOT NULL,
  directory TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'aborted')),
  result_json TEXT,
  delivered TEXT CHECK (delivered IN ('tool', 'message')),
  started_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX mcp_delegations_thread ON mcp_delegations (room_id, root_event_id);
CREATE INDEX mcp_delegations_open ON mcp_delegations (status) WHERE status = 'running' OR delivered IS NULL;
