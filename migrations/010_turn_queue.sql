-- One durable queue for every backend's prompts that wait for the turn before them (OpenCode
-- per session, Letta per agent, an ACP agent per thread). A row is taken out when its turn
-- starts, so each is sent once; a restart finds the rest here and goes on.
CREATE TABLE turn_queue (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  backend TEXT NOT NULL,
  -- What turns wait for: a session, an agent, a thread (the backend's choice).
  queue_key TEXT NOT NULL,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  prompt_event_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  text TEXT NOT NULL,
  -- Attached files as JSON [{mime, filename, data (base64)}].
  files_json TEXT,
  -- What else the backend needs to start the turn (options, a command, its turn row), as JSON.
  payload_json TEXT NOT NULL DEFAULT '{}',
  queued_at INTEGER NOT NULL
);
CREATE INDEX turn_queue_by_key ON turn_queue (backend, queue_key, id);

INSERT INTO turn_queue (id, backend, queue_key, room_id, root_event_id, prompt_event_id, sender, text, files_json, payload_json, queued_at)
  SELECT id, 'opencode', session_id, room_id, root_event_id, prompt_event_id, sender, text, files_json,
         json_object('opts', json(options_json), 'command', command), queued_at
  FROM queued_prompts;
DROP TABLE queued_prompts;

-- OpenCode's turns: 'aborted' is its own outcome (not done, not failed), and what a re-send
-- after a restart needs to send the same prompt (files, model, agent, a /command) is kept
-- while the turn runs. SQLite cannot change a CHECK, so the table is rebuilt.
CREATE TABLE turns_new (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  prompt_event_id TEXT NOT NULL,
  prompt_message_id TEXT,
  prompted_by TEXT NOT NULL,
  prompt_text TEXT NOT NULL,
  prompt_json TEXT,
  reply_event_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'aborted')),
  started_at INTEGER NOT NULL,
  finished_at INTEGER
);
INSERT INTO turns_new (id, room_id, root_event_id, session_id, prompt_event_id, prompt_message_id, prompted_by, prompt_text, reply_event_id, status, started_at, finished_at)
  SELECT id, room_id, root_event_id, session_id, prompt_event_id, prompt_message_id, prompted_by, prompt_text, reply_event_id, status, started_at, finished_at FROM turns;
DROP TABLE turns;
ALTER TABLE turns_new RENAME TO turns;
CREATE INDEX turns_running ON turns (status) WHERE status = 'running';

-- The engine's record of a live reply while its turn runs: every piece's event id (a long
-- answer continues in further replies) and what it showed, so that a restarted bot edits the
-- same pieces and never shows less than before. Deleted when the turn ends.
CREATE TABLE live_replies (
  backend TEXT NOT NULL,
  turn_id INTEGER NOT NULL,
  event_ids TEXT NOT NULL DEFAULT '[]',
  state_json TEXT,
  -- The transaction id base of the pieces' first posts: a post repeated after a crash (its
  -- answer lost) is recognised by the homeserver, which returns the same event.
  txn_base TEXT,
  PRIMARY KEY (backend, turn_id)
);
