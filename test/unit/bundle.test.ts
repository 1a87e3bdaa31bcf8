import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { bundleEntryName, bundleState, manifestName, stampOf, type BundleManifest } from "../../src/startup/bundle.ts";
import { loadBundle } from "../../src/startup/bundle-load.ts";
import { compileCacheDir } from "../../src/run.ts";

// The bot runs the prebuilt bundle only while every file it was built from is unchanged
// (src/startup/bundle.ts), with the code V8 compiled during the last start (bundle-load.ts);
// scripts/build.ts makes it. All checked here, the build on the real sources.

const repoDir = join(import.meta.dirname, "..", "..");

function fakeRepo(): { dir: string; bundle: string; write: (files: string[]) => void } {
  const dir = mkdtempSync(join(tmpdir(), "bundle-state-"));
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src", "a.ts"), "export const a = 1;\n");
  writeFileSync(join(dir, "src", "b.ts"), "export const b = 2;\n");
  const bundle = join(dir, "dist", "bot");
  mkdirSync(bundle, { recursive: true });
  const write = (files: string[]): void => {
    const manifest: BundleManifest = { version: 2, entry: "app.cjs", inputs: Object.fromEntries(files.map((f) => [f, stampOf(join(dir, f))])) };
    writeFileSync(join(bundle, manifestName), JSON.stringify(manifest));
  };
  return { dir, bundle, write };
}

test("the bundle is used while its inputs are as they were; a change, a removal or no build means the sources", (t) => {
  const { dir, bundle, write } = fakeRepo();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.deepEqual(bundleState(dir), { fresh: false, why: "not built (npm run build)" });

  write(["src/a.ts", "src/b.ts"]);
  assert.deepEqual(bundleState(dir), { fresh: true, entry: join(bundle, "app.cjs") });

  // New times, same content (a copy into an image, a checkout of the same commit): still current.
  utimesSync(join(dir, "src", "a.ts"), new Date(2001, 1, 1), new Date(2001, 1, 1));
  assert.equal(bundleState(dir).fresh, true);

  // Same size, other content, new time: an edit.
  writeFileSync(join(dir, "src", "a.ts"), "export const a = 3;\n");
  assert.deepEqual(bundleState(dir), { fresh: false, why: "src/a.ts changed" });
  write(["src/a.ts", "src/b.ts"]);

  writeFileSync(join(dir, "src", "b.ts"), "export const b = 22;\n");
  assert.deepEqual(bundleState(dir), { fresh: false, why: "src/b.ts changed" });
  write(["src/a.ts", "src/b.ts"]);

  rmSync(join(dir, "src", "b.ts"));
  assert.deepEqual(bundleState(dir), { fresh: false, why: "src/b.ts is gone" });

  writeFileSync(join(bundle, manifestName), JSON.stringify({ version: 1, entry: "main.js", inputs: {} }));
  assert.deepEqual(bundleState(dir), { fresh: false, why: "built by another version of scripts/build.ts" });
});

test("the compile cache lies beside the database, only where that directory exists", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "compile-cache-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(compileCacheDir(join(dir, "bot.db")), join(dir, "node-compile-cache"));
  assert.equal(compileCacheDir(join(dir, "not-yet", "bot.db")), undefined, "a first start creates nothing before the database does");
  assert.equal(compileCacheDir(":memory:"), undefined);
});

test("scripts/build.ts bundles the bot: every input recorded, the same program as the sources", (t) => {
  const out = join(mkdtempSync(join(tmpdir(), "bundle-build-")), "dist", "bot");
  t.after(() => rmSync(join(out, "..", ".."), { recursive: true, force: true }));
  const build = spawnSync(process.execPath, ["--disable-warning=ExperimentalWarning", join(repoDir, "scripts", "build.ts"), "--out", out], { encoding: "utf8", timeout: 120_000 });
  assert.equal(build.status, 0, build.stderr);

  const manifest = JSON.parse(readFileSync(join(out, manifestName), "utf8")) as BundleManifest;
  for (const input of ["src/run.ts", "src/app.ts", "src/config/load.ts", "src/startup/bundle-entry.ts", "node_modules/matrix-bot-sdk/lib/MatrixClient.js"]) {
    assert.ok(manifest.inputs[input], `${input} is recorded`);
    assert.equal(manifest.inputs[input]?.size, statSync(join(repoDir, input)).size);
  }
  assert.equal(manifest.entry, bundleEntryName);
  assert.deepEqual(readdirSync(out).filter((f) => /\.(c|m)?js$/.test(f)).sort(), ["app.cjs", "start.mjs"]);
  const code = readFileSync(join(out, bundleEntryName), "utf8");
  // Built-in punycode from outside node_modules draws a deprecation warning on stderr.
  assert.doesNotMatch(code, /__require\("punycode"\)/);
  assert.match(code, /require\("better-sqlite3"\)/, "the native module stays in node_modules");
  // Packages the bot never runs (or only later) are not in the bundle; each stand-in finds the copy its importer would.
  const lazy = [...code.matchAll(/__bundleRequireFrom\("([^"]+)"\)\("([^"]+)"\)/g)].map((m) => ({ dir: m[1] ?? "", pkg: m[2] ?? "" }));
  assert.deepEqual(lazy.map((l) => l.pkg).sort(), ["express", "har-validator", "html-to-text", "http-signature", "lowdb", "lowdb/adapters/FileSync", "postgres", "psl"]);
  for (const { dir, pkg } of lazy) {
    assert.doesNotMatch(code, new RegExp(`^// node_modules/${pkg.split("/")[0]}/`, "m"), `${pkg} is not bundled`);
    const loaded: unknown = createRequire(new URL(dir, pathToFileURL(join(out, bundleEntryName))))(pkg);
    assert.ok(loaded !== null && (typeof loaded === "object" || typeof loaded === "function"), `${pkg} loads from ${dir}`);
  }

  // The bundle's main() as the launcher calls it, against the sources': the same words.
  const run = (script: string): ReturnType<typeof spawnSync> => spawnSync(process.execPath, ["--disable-warning=ExperimentalWarning", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
  const loader = pathToFileURL(join(repoDir, "src", "startup", "bundle-load.ts")).href;
  const bundled = run(`const { loadBundle } = await import(${JSON.stringify(loader)}); await loadBundle(${JSON.stringify(join(out, bundleEntryName))}, ${JSON.stringify(join(out, "code-cache", "x"))}).main(["--bogus"], { from: "bundle" });`);
  const sources = run(`const { main } = await import(${JSON.stringify(pathToFileURL(join(repoDir, "src", "run.ts")).href)}); await main(["--bogus"], { from: "sources" });`);
  assert.equal(bundled.status, 2);
  assert.equal(bundled.stderr, sources.stderr);
  assert.match(String(bundled.stderr), /Unknown option --bogus/);
});

test("the code V8 compiled during a start is kept for the next: used while current, written again when missing or rejected", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "code-cache-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const entry = join(dir, "app.cjs");
  const cacheFile = join(dir, "code-cache", "app.cjs.cache");
  // A bundle as scripts/build.ts leaves it: CommonJS, import.meta.url given by the loader.
  writeFileSync(entry, `"use strict";\nexports.main = async (argv) => { globalThis.seen = [argv, __bundleImportMetaUrl]; };\n`);

  // Each start in a process of its own, as V8 reuses what it compiled within one.
  const start = (): { codeCache: string; seen: unknown } => {
    const loader = pathToFileURL(join(repoDir, "src", "startup", "bundle-load.ts")).href;
    const r = spawnSync(process.execPath, ["--disable-warning=ExperimentalWarning", "--input-type=module", "-e", `const { loadBundle } = await import(${JSON.stringify(loader)});
const b = loadBundle(${JSON.stringify(entry)}, ${JSON.stringify(cacheFile)}); await b.main(["x"], { from: "bundle" }); b.saveCodeCache();
process.stdout.write(JSON.stringify({ codeCache: b.codeCache, seen: globalThis.seen }));`], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { codeCache: string; seen: unknown };
  };
  const first = start();
  assert.deepEqual(first, { codeCache: "none", seen: [["x"], pathToFileURL(entry).href] });
  assert.ok(statSync(cacheFile).size > 0, "written once the bot is ready");
  const written = statSync(cacheFile).mtimeMs;
  assert.equal(start().codeCache, "used");
  assert.equal(statSync(cacheFile).mtimeMs, written, "a cache in use is not written again");

  writeFileSync(cacheFile, "not a code cache");
  assert.equal(start().codeCache, "rejected");
  assert.equal(start().codeCache, "used", "a rejected cache is replaced");

  // A bundle without main(): said, not run half-way.
  writeFileSync(join(dir, "empty.cjs"), "exports.other = 1;\n");
  assert.throws(() => loadBundle(join(dir, "empty.cjs"), cacheFile), /has no main\(\): rebuild it \(npm run build\)/);
});
