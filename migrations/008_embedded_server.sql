-- The `opencode serve` the bot started itself (no opencode.serverUrl), one row per server name.
-- A bot killed with -9 (or by the OOM killer) leaves a server without a sandbox running; this row
-- is how its next start finds that server again, to adopt it (the turn in flight goes on) or to
-- stop it, instead of starting a second one beside an orphan. Written when the process is spawned,
-- deleted when the bot stops it. See src/opencode/server-record.ts.
-- The password is kept so that the server can be adopted (it is the server's only lock): the
-- sandbox hides this database from the agent; without one the agent can read it anyway.
CREATE TABLE embedded_server (
  name TEXT PRIMARY KEY,
  pid INTEGER NOT NULL,
  -- field 22 of /proc/<pid>/stat (ticks after boot): a pid reused by another process has another
  proc_start TEXT,
  port INTEGER NOT NULL,
  username TEXT NOT NULL,
  password TEXT NOT NULL,
  binary TEXT NOT NULL,
  version TEXT,
  sandboxed INTEGER NOT NULL CHECK (sandboxed IN (0, 1)),
  workspace TEXT NOT NULL,
  -- hash of the command, arguments (but the port) and environment (but the password): a server
  -- started with other settings is not adopted
  spec TEXT NOT NULL,
  log_file TEXT,
  started_at INTEGER NOT NULL
);
