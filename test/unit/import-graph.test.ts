import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

// The layout's rules, checked on every run: no import circle between files of src/, and no two
// folders of src/ that import each other (the data flows one way).

const src = resolve(import.meta.dirname, "..", "..", "src");
const files = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith(".ts")).map((f) => join(src, f));
const imports = new Map<string, string[]>();
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const targets = [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+"(\.{1,2}\/[^"]+)"/gm)].map((m) => resolve(dirname(file), m[1] as string));
  imports.set(file, targets.filter((t) => imports.has(t) || files.includes(t)));
}
const name = (f: string): string => relative(src, f);
const folder = (f: string): string => name(f).split("/")[0] as string; // a file at the top is a folder of its own

test("no import circle between files of src/", () => {
  const state = new Map<string, "open" | "done">();
  const circles: string[] = [];
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      circles.push([...path.slice(path.indexOf(f)), f].map(name).join(" → "));
      return;
    }
    state.set(f, "open");
    for (const t of imports.get(f) ?? []) visit(t, [...path, f]);
    state.set(f, "done");
  };
  for (const f of files) visit(f, []);
  assert.deepEqual(circles, []);
});

test("no two folders of src/ import each other", () => {
  const edges = new Set<string>();
  for (const [f, targets] of imports) for (const t of targets) if (folder(f) !== folder(t)) edges.add(`${folder(f)} → ${folder(t)}`);
  const both = [...edges].filter((e) => edges.has(e.split(" → ").reverse().join(" → ")));
  assert.deepEqual(both, []);
  assert.ok(edges.has("opencode → commands"), "the check sees the imports");
});
