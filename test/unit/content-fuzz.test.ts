import { test } from "node:test";
import assert from "node:assert/strict";
import { roomMessage, threadMessage } from "../../src/matrix/content.ts";
import { formatMarkdown } from "../../src/matrix/format.ts";
import { seededRandom } from "../harness/seeded-random.ts";

// Whatever an answer quotes, the event the bot composes fits a homeserver's 64 KiB limit:
// huge, escaping-heavy, multi-byte or control-character text is cut with a note, and
// ordinary text is left alone.

const { seed, rand } = seededRandom(99);
const target = { roomId: "!r:x", threadRoot: "$root", replyTo: "$root" };
const eventBytes = (content: Record<string, unknown>): number => Buffer.byteLength(JSON.stringify({ type: "m.room.message", room_id: "!r:x", sender: "@bot:x", content }), "utf8");
const pieces = ["&", "<", ">", '"', "\u0000", "\u0007", "\\", "`", "*", "😀", "é", "中", "a", " ", "\n", "> ", "[x](y)", "&amp;", "<b>", "\ud800"];

test(`composed messages always fit one event (seed ${seed})`, () => {
  for (let i = 0; i < 24; i++) {
    const unit = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pieces[Math.floor(rand() * pieces.length)]).join("");
    const size = Math.floor(rand() * 70_000);
    const text = `Unknown model \`${unit.repeat(Math.ceil(size / unit.length)).slice(0, size)}\`.`;
    for (const content of [threadMessage(target, text, { notice: true }), roomMessage(text)]) {
      const bytes = eventBytes(content);
      assert.ok(bytes < 60_000, `${bytes} bytes for ${size} chars of ${JSON.stringify(unit)}`);
      if (content.body !== text) assert.match(String(content.body), /_\(cut: the message was too long for Matrix\)_$/);
    }
  }
});

test("ordinary answers are not touched", () => {
  const text = `**Sessions in this room** (30):\n\n${"1. **title** — `ses_abc` · idle · 3 min ago\n".repeat(30)}`;
  assert.equal(threadMessage(target, text).body, text);
  const long = "word ".repeat(3000); // 15 KB that fits: kept whole
  assert.equal(roomMessage(long).body, long);
});

test("markdown nested thousands of levels deep is still formatted, not thrown on", () => {
  for (const text of [">".repeat(8000), "> ".repeat(4000), "1. ".repeat(2600), `Echo: hi\n${">".repeat(5000)}`, "- ".repeat(4000), `${"[".repeat(4000)}x${"]".repeat(4000)}`]) {
    const t0 = performance.now();
    const f = formatMarkdown(text);
    assert.equal(f.body, text);
    assert.ok(f.formatted_body.length > 0);
    assert.ok(performance.now() - t0 < 3000, `${(performance.now() - t0).toFixed(0)} ms for ${JSON.stringify(text.slice(0, 12))}…`);
  }
});
