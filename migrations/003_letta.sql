-- The Letta agent a room talks to (`!letta use`); rooms without one use letta.defaultAgent.
-- Letta threads live in `threads` (backend 'letta', session_id = the agent id).
CREATE TABLE letta_rooms (
  room_id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  agent_name TEXT NOT NULL,
  bound_by TEXT NOT NULL,
  bound_at INTEGER NOT NULL
);

-- One prompt sent to a Letta agent and the reply streaming its answer. Recorded in the same
-- transaction that marks the Matrix event handled, so a restart never sends a prompt twice;
-- a turn still 'running' at start-up was cut off, and its reply says so.
CREATE TABLE letta_turns (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  prompt_event_id TEXT NOT NULL,
  -- The message's offline threading id, as Letta stores it.
  otid TEXT NOT NULL,
  prompted_by TEXT NOT NULL,
  reply_event_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
  steps INTEGER,
  tokens INTEGER,
  first_token_ms INTEGER,
  started_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX letta_turns_running ON letta_turns (status) WHERE status = 'running';
