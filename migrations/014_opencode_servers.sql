-- Several OpenCode servers by name (opencode.servers; README: "Several OpenCode servers").
-- A thread remembers the server its session lives on: session ids are per server, so every
-- lookup by session id goes through the thread's server. NULL: the server `default` (that of
-- opencode.serverUrl, or the embedded one), where every thread from before this migration lives.
ALTER TABLE threads ADD COLUMN server TEXT;
-- The server a room's new sessions start on (`!oc server <name>`). NULL: the rooms' default
-- (the server with `default: true`, else `default`). Moving a room does not move its threads.
ALTER TABLE rooms ADD COLUMN opencode_server TEXT;
