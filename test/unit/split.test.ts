import { test } from "node:test";
import assert from "node:assert/strict";
import { splitMarkdown } from "../../src/render/split.ts";

test("short text stays whole", () => {
  assert.deepEqual(splitMarkdown("hello"), ["hello"]);
});

test("long text is split at line breaks within the byte limit, losing nothing", () => {
  const lines = Array.from({ length: 500 }, (_, i) => `line ${i} ${"é".repeat(20)}`);
  const text = lines.join("\n");
  const pieces = splitMarkdown(text, 2000);
  assert.ok(pieces.length > 3);
  for (const p of pieces) assert.ok(Buffer.byteLength(p) <= 2000, `piece of ${Buffer.byteLength(p)} bytes`);
  assert.equal(pieces.join("\n").split("\n").filter((l) => l.startsWith("line")).length, 500);
  for (const p of pieces) assert.ok(p.startsWith("line"), "cut at a line break");
});

test("a code fence cut in two is closed and reopened", () => {
  const text = `intro\n\`\`\`ts\n${Array.from({ length: 300 }, (_, i) => `const x${i} = ${i};`).join("\n")}\n\`\`\`\nafter`;
  const pieces = splitMarkdown(text, 1500);
  for (const p of pieces) {
    const fences = p.split("\n").filter((l) => l.startsWith("```")).length;
    assert.equal(fences % 2, 0, `unbalanced fences in:\n${p.slice(0, 80)}`);
  }
});

test("growing text keeps its earlier pieces", () => {
  const base = Array.from({ length: 200 }, (_, i) => `word ${i}`).join("\n");
  const a = splitMarkdown(base, 500);
  const b = splitMarkdown(`${base}\nmore\nand more`, 500);
  assert.deepEqual(b.slice(0, a.length - 1), a.slice(0, a.length - 1));
});

test("one huge line without breaks is cut, without splitting characters", () => {
  const pieces = splitMarkdown("😀".repeat(3000), 1000);
  assert.ok(pieces.length >= 12);
  assert.equal(pieces.join(""), "😀".repeat(3000));
});
