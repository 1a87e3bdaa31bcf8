-- Prompts waiting for the turn running in their session. Kept here rather than in memory so
-- that a restart does not drop them; a row is deleted in the same transaction that starts its
-- turn, so each is sent exactly once.
CREATE TABLE queued_prompts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  -- The Matrix event the answer replies to, and who asked (mentioned when it is done).
  prompt_event_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  -- The text as OpenCode will get it (attributed), or the arguments of `command`.
  text TEXT NOT NULL,
  -- An OpenCode `/command` to run instead of a plain prompt.
  command TEXT,
  -- Attached files as JSON [{mime, filename, data (base64)}], and the session options (directory, model, agent).
  files_json TEXT,
  options_json TEXT NOT NULL,
  queued_at INTEGER NOT NULL
);
CREATE INDEX queued_prompts_by_session ON queued_prompts (session_id, id);

-- Prompts without a person typing: from the `send` CLI (CI jobs, cron) or due later. The bot's
-- scheduler claims due rows with one UPDATE … RETURNING (pending → firing), so each fires once;
-- a row left 'firing' by a crash is fired again at start-up, and its steps are idempotent.
CREATE TABLE scheduled_prompts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  room_id TEXT NOT NULL,
  -- Where it goes: an existing session thread, an existing session, or (both null) a new thread.
  thread_root TEXT,
  session_id TEXT,
  text TEXT NOT NULL,
  notify_only INTEGER NOT NULL DEFAULT 0,
  due_at INTEGER NOT NULL,
  -- Recurring schedules compute their next due time after each firing.
  cron TEXT,
  -- 'held' while the CLI posts the prompt's message; 'firing' between claim and hand-over.
  status TEXT NOT NULL CHECK (status IN ('held', 'pending', 'firing', 'done', 'cancelled', 'failed')),
  -- The message the prompt was posted as (thread root, or reply target in a thread).
  marker_event_id TEXT,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  fired_count INTEGER NOT NULL DEFAULT 0,
  last_fired_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX scheduled_prompts_due ON scheduled_prompts (due_at) WHERE status = 'pending';
CREATE INDEX scheduled_prompts_by_room ON scheduled_prompts (room_id, status);

-- Threads whose session works in a git worktree (`!oc worktree`), for `!oc merge`.
CREATE TABLE worktrees (
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  name TEXT NOT NULL,
  branch TEXT NOT NULL,
  directory TEXT NOT NULL,
  project_dir TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  merged_at INTEGER,
  PRIMARY KEY (room_id, root_event_id)
);
