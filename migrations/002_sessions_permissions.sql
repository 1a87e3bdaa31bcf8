-- Per-room defaults set by commands: the project directory, the model and the agent.
ALTER TABLE rooms ADD COLUMN workspace_dir TEXT;
ALTER TABLE rooms ADD COLUMN default_model TEXT;
ALTER TABLE rooms ADD COLUMN default_agent TEXT;

-- Per-thread overrides, and the directory the session lives in.
ALTER TABLE threads ADD COLUMN directory TEXT;
ALTER TABLE threads ADD COLUMN model TEXT;
ALTER TABLE threads ADD COLUMN agent TEXT;

-- Permission requests asked in a thread; pending ones survive a restart and are answered
-- by reaction or command.
CREATE TABLE permissions (
  request_id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  message_event_id TEXT,
  summary TEXT NOT NULL,
  asked_of TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'once', 'always', 'reject', 'expired')),
  decided_by TEXT,
  asked_at INTEGER NOT NULL,
  decided_at INTEGER
);
CREATE INDEX permissions_by_message ON permissions (message_event_id);
CREATE INDEX permissions_pending ON permissions (room_id, root_event_id) WHERE status = 'pending';
