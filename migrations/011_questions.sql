-- Questions OpenCode's agent asks (its `question` tool) in a session thread. A pending one waits
-- for the people in the thread: a numbered reaction or a typed answer. Several questions in one
-- request are answered in order; the answers given so far are kept here, so that neither a
-- restart nor a second person loses them. See src/opencode/question-desk.ts.
CREATE TABLE questions (
  request_id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  message_event_id TEXT,
  -- OpenCode's questions as it sent them (JSON: [{question, header, options: [{label, description}], multiple?, custom?}]).
  questions_json TEXT NOT NULL,
  -- The answers so far, in the order of the questions (JSON: [["Yes"], ["my own words"]]).
  answers_json TEXT NOT NULL DEFAULT '[]',
  -- Who gave each of them (JSON: user ids; empty for answers given outside Matrix).
  answered_by TEXT NOT NULL DEFAULT '[]',
  -- Whose turn asked it: the person the message mentions.
  asked_of TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'answered', 'rejected', 'gone')),
  asked_at INTEGER NOT NULL,
  decided_at INTEGER
);
CREATE INDEX questions_by_message ON questions (message_event_id);
CREATE INDEX questions_pending ON questions (room_id, root_event_id) WHERE status = 'pending';
