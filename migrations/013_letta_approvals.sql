-- A Letta agent's request for approval of tool calls (a tool with a requires_approval rule):
-- the turn that stopped for it records it, its thread shows it, and reactions or
-- `!letta allow` / `!letta deny` answer it. Pending ones survive a restart; one recorded but
-- not yet posted (the bot stopped in between) is posted at the next start.
CREATE TABLE letta_approvals (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id TEXT NOT NULL,
  agent_name TEXT NOT NULL,
  -- Letta's approval_request_message and the run it stopped.
  request_message_id TEXT NOT NULL,
  run_id TEXT,
  -- The calls asked about, as the stream gave them: JSON [{id, name, arguments}]. The answer
  -- names every tool_call_id (Letta takes one answer for all of them).
  calls_json TEXT NOT NULL,
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL,
  -- Who asked the turn that stopped (the one the request mentions) and the turn's reply.
  asked_of TEXT NOT NULL,
  reply_event_id TEXT,
  message_event_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'allowed', 'denied')),
  decided_by TEXT,
  reason TEXT,
  asked_at INTEGER NOT NULL,
  decided_at INTEGER,
  UNIQUE (agent_id, request_message_id)
);
CREATE INDEX letta_approvals_by_message ON letta_approvals (message_event_id);
CREATE INDEX letta_approvals_pending ON letta_approvals (room_id, root_event_id) WHERE status = 'pending';
