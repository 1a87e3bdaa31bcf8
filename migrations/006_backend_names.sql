-- A backend's name is its own (opencode, letta, an ACP agent's name…): the store no longer
-- lists the backends there may be. SQLite cannot drop a CHECK, so the table is rebuilt.
CREATE TABLE threads_new (
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  backend TEXT NOT NULL CHECK (backend <> ''),
  session_id TEXT NOT NULL,
  title TEXT,
  started_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_activity_at INTEGER NOT NULL,
  directory TEXT,
  model TEXT,
  agent TEXT,
  PRIMARY KEY (room_id, root_event_id)
);
INSERT INTO threads_new (room_id, root_event_id, backend, session_id, title, started_by, created_at, last_activity_at, directory, model, agent)
  SELECT room_id, root_event_id, backend, session_id, title, started_by, created_at, last_activity_at, directory, model, agent FROM threads;
DROP TABLE threads;
ALTER TABLE threads_new RENAME TO threads;
CREATE INDEX threads_by_session ON threads (backend, session_id);
