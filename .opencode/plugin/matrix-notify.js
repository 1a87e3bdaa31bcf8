// OpenCode plugin: tells the Matrix bot about sessions, so that work started in the TUI, an IDE
// or a script (not from Matrix) shows up in Matrix too.
//
// Install: copy this file into `.opencode/plugin/` of a project, or into
// `~/.config/opencode/plugin/` for every project, and start OpenCode with
//   MATRIX_NOTIFY_URL=http://127.0.0.1:8080/notify   (the bot's POST /notify)
//   MATRIX_NOTIFY_TOKEN=<the bot's notify.token>
// Without MATRIX_NOTIFY_URL the plugin does nothing.
//
// It posts {title, message, status, sessionId} for
//   session.idle      -> status "completed"
//   session.error     -> status "error" (not for a deliberate abort)
//   permission.asked  -> status "permission"
//   file.edited       -> status "file_edit" (edits of a few seconds gathered into one post)
// The bot puts each into the session's thread when the session has one (and drops what its own
// live reply already shows), otherwise into its notify.defaultRoom.
//
// Plain JavaScript with no imports, so it loads without installing @opencode-ai/plugin.
// Nothing here may break OpenCode: every failure is caught, every request has a short timeout.

/* global AbortSignal, setTimeout, clearTimeout */

const TIMEOUT_MS = 3000;
const FILE_BATCH_MS = 1500;
const MAX_QUEUED = 50;

export const MatrixNotify = async (ctx) => {
  const url = process.env.MATRIX_NOTIFY_URL;
  const token = process.env.MATRIX_NOTIFY_TOKEN;
  if (!url) return {};
  const directory = (ctx && typeof ctx.directory === "string" && ctx.directory) || process.cwd();

  const titles = new Map(); // sessionID -> title
  const children = new Set(); // sessions started by another session (subagents)
  const busy = []; // sessions working now, most recent last
  const edits = new Map(); // sessionID ("" when unknown) -> Set of files
  let editTimer;
  let queue = Promise.resolve();
  let queued = 0;
  let lastWarning = 0;

  const warn = (text) => {
    // At most one line a minute on OpenCode's log; the token never appears in it.
    if (Date.now() - lastWarning < 60_000) return;
    lastWarning = Date.now();
    try {
      console.error(`matrix-notify: ${text}`);
    } catch {
      // nothing to do
    }
  };

  const send = async (payload) => {
    try {
      const headers = { "content-type": "application/json" };
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(payload), signal: AbortSignal.timeout(TIMEOUT_MS) });
      const text = await res.text().catch(() => "");
      if (!res.ok) warn(`POST ${url} answered ${res.status}: ${text.slice(0, 200)}`);
    } catch (err) {
      warn(`POST ${url} failed: ${err && err.message ? err.message : String(err)}`);
    }
  };

  // Posts go out one after another (an edit notice before the completion that follows it), never blocking OpenCode.
  const post = (payload) => {
    if (queued >= MAX_QUEUED) return queue;
    queued++;
    queue = queue.then(() => send(payload)).finally(() => {
      queued--;
    });
    return queue;
  };

  const name = (sessionID) => {
    const title = titles.get(sessionID);
    return title ? `"${title}"` : sessionID ? `${sessionID}` : "a session";
  };

  const relative = (file) => {
    const f = String(file);
    return f.startsWith(directory + "/") ? f.slice(directory.length + 1) : f;
  };

  const flushEdits = () => {
    if (editTimer) clearTimeout(editTimer);
    editTimer = undefined;
    for (const [sessionID, files] of edits) {
      const list = [...files].map(relative);
      const shown = list.slice(0, 10).join(", ") + (list.length > 10 ? ` and ${list.length - 10} more` : "");
      post({
        title: list.length === 1 ? "File edited" : `${list.length} files edited`,
        message: `${shown}${sessionID ? ` (session ${name(sessionID)})` : ""} in ${directory}`,
        status: "file_edit",
        ...(sessionID ? { sessionId: sessionID, taskId: sessionID } : {}),
      });
    }
    edits.clear();
  };

  const handle = (event) => {
    const type = event && event.type;
    const p = (event && event.properties) || {};
    switch (type) {
      case "session.created":
      case "session.updated": {
        const info = p.info || {};
        const id = p.sessionID || info.id;
        if (id && typeof info.title === "string") titles.set(id, info.title);
        if (id && info.parentID) children.add(id);
        return;
      }
      case "session.deleted": {
        const id = p.sessionID || (p.info && p.info.id);
        titles.delete(id);
        children.delete(id);
        return;
      }
      case "session.status": {
        const i = busy.indexOf(p.sessionID);
        if (i >= 0) busy.splice(i, 1);
        if (p.status && p.status.type === "busy" && p.sessionID) busy.push(p.sessionID);
        return;
      }
      case "file.edited": {
        if (!p.file) return;
        // file.edited carries no session: it belongs to the session that is working (the latest one, if several).
        const sessionID = busy[busy.length - 1] || "";
        if (!edits.has(sessionID)) edits.set(sessionID, new Set());
        edits.get(sessionID).add(p.file);
        if (!editTimer) editTimer = setTimeout(flushEdits, FILE_BATCH_MS);
        return;
      }
      case "session.idle": {
        const sessionID = p.sessionID;
        const i = busy.indexOf(sessionID);
        if (i >= 0) busy.splice(i, 1);
        if (edits.size > 0) flushEdits();
        if (children.has(sessionID)) return; // a subagent finishing is part of its parent's work
        post({
          title: "OpenCode session completed",
          message: `Session ${name(sessionID)} completed in ${directory}`,
          status: "completed",
          sessionId: sessionID,
          taskId: sessionID,
        });
        return;
      }
      case "session.error": {
        const error = p.error || {};
        if (error.name === "MessageAbortedError") return; // someone stopped it on purpose
        const detail = (error.data && error.data.message) || error.message || "";
        post({
          title: "OpenCode session failed",
          message: `${error.name || "Error"}${detail ? `: ${String(detail).slice(0, 1000)}` : ""}${p.sessionID ? ` (session ${name(p.sessionID)})` : ""} in ${directory}`,
          status: "error",
          ...(p.sessionID ? { sessionId: p.sessionID, taskId: p.sessionID } : {}),
        });
        return;
      }
      case "permission.asked": {
        const patterns = Array.isArray(p.patterns) && p.patterns.length > 0 ? `: ${p.patterns.join(", ").slice(0, 500)}` : "";
        post({
          title: "OpenCode asks for permission",
          message: `${p.permission || "a tool"}${patterns} (session ${name(p.sessionID)}) in ${directory}`,
          status: "permission",
          ...(p.sessionID ? { sessionId: p.sessionID, taskId: p.sessionID } : {}),
        });
        return;
      }
      default:
        return;
    }
  };

  return {
    event: async ({ event }) => {
      try {
        handle(event);
      } catch (err) {
        warn(`could not handle ${event && event.type}: ${err && err.message ? err.message : String(err)}`);
      }
    },
  };
};
