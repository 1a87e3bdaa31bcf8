-- Rooms the bot has joined, with per-room settings (later issues add columns).
CREATE TABLE rooms (
  room_id TEXT PRIMARY KEY,
  joined_at INTEGER NOT NULL,
  encrypted_notice_at INTEGER
);

-- One thread in one room belongs to one agent session.
CREATE TABLE threads (
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  backend TEXT NOT NULL CHECK (backend IN ('opencode', 'letta')),
  session_id TEXT NOT NULL,
  title TEXT,
  started_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_activity_at INTEGER NOT NULL,
  PRIMARY KEY (room_id, root_event_id)
);
CREATE INDEX threads_by_session ON threads (backend, session_id);

-- A turn is one prompt and the agent's answer to it; the reply event is what the bot edits.
-- A turn still 'running' at start-up was cut short by a crash and is reconciled.
CREATE TABLE turns (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  prompt_event_id TEXT NOT NULL,
  -- The OpenCode message id the bot chose for the prompt: after a crash it tells whether the prompt arrived.
  prompt_message_id TEXT,
  prompted_by TEXT NOT NULL,
  -- Kept so that a prompt cut off by a crash before it reached OpenCode can be sent afterwards.
  prompt_text TEXT NOT NULL,
  reply_event_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
  started_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX turns_running ON turns (status) WHERE status = 'running';

-- Every Matrix event the bot will act on, written before the sync token moves past it, so a
-- crash loses none and a restart or a replayed sync never acts on one twice.
CREATE TABLE inbox (
  event_id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  event_json TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'done')),
  received_at INTEGER NOT NULL,
  processed_at INTEGER
);
CREATE INDEX inbox_pending ON inbox (received_at) WHERE status = 'pending';

-- matrix-bot-sdk's storage (sync token, filter, key/value) and the bot's own facts.
CREATE TABLE kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
