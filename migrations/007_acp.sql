-- One prompt sent to an ACP agent (acp.agents) and the reply streaming its answer. Recorded when
-- the Matrix event is taken, so a restart never sends a prompt twice: a turn still 'running' (or
-- 'queued') at start-up was cut off with the agent process, and its thread says so.
-- ACP threads live in `threads` (backend = the agent's configured name, session_id = ACP's).
CREATE TABLE acp_turns (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent TEXT NOT NULL,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  prompt_event_id TEXT NOT NULL,
  prompted_by TEXT NOT NULL,
  reply_event_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
  stop_reason TEXT,
  tokens INTEGER,
  started_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX acp_turns_open ON acp_turns (agent, status) WHERE status IN ('queued', 'running');
