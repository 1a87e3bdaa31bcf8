-- How turns read and what a message sent during a turn does, per room (root_event_id '') and
-- per thread (its root); a thread's own setting wins over its room's. NULL: not set here.
CREATE TABLE conversation_settings (
  room_id TEXT NOT NULL,
  root_event_id TEXT NOT NULL DEFAULT '',
  verbosity TEXT CHECK (verbosity IN ('quiet', 'normal', 'verbose')),
  busy_mode TEXT CHECK (busy_mode IN ('queue', 'interrupt')),
  PRIMARY KEY (room_id, root_event_id)
);
