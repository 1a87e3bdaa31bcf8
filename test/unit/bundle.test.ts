import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { bundleState, manifestName, stampOf, type BundleManifest } from "../../src/startup/bundle.ts";
import { compileCacheDir } from "../../src/run.ts";

// src/main.ts runs the prebuilt bundle only while every file it was built from is unchanged
// (src/startup/bundle.ts); scripts/build.ts makes it. Both checked here, the build on the real sources.

const repoDir = join(import.meta.dirname, "..", "..");

function fakeRepo(): { dir: string; bundle: string; write: (files: string[]) => void } {
  const dir = mkdtempSync(join(tmpdir(), "bundle-state-"));
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src", "a.ts"), "export const a = 1;\n");
  writeFileSync(join(dir, "src", "b.ts"), "export const b = 2;\n");
  const bundle = join(dir, "dist", "bot");
  mkdirSync(bundle, { recursive: true });
  const write = (files: string[]): void => {
    const manifest: BundleManifest = { version: 1, entry: "main.js", inputs: Object.fromEntries(files.map((f) => [f, stampOf(join(dir, f))])) };
    writeFileSync(join(bundle, manifestName), JSON.stringify(manifest));
  };
  return { dir, bundle, write };
}

test("the bundle is used while its inputs are as they were; a change, a removal or no build means the sources", (t) => {
  const { dir, bundle, write } = fakeRepo();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.deepEqual(bundleState(dir), { fresh: false, why: "not built (npm run build)" });

  write(["src/a.ts", "src/b.ts"]);
  assert.deepEqual(bundleState(dir), { fresh: true, entry: pathToFileURL(join(bundle, "main.js")).href });

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

  writeFileSync(join(bundle, manifestName), JSON.stringify({ version: 2, entry: "main.js", inputs: {} }));
  assert.equal(bundleState(dir).fresh, false);
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
  for (const input of ["src/run.ts", "src/app.ts", "src/config/load.ts", "node_modules/matrix-bot-sdk/lib/MatrixClient.js"]) {
    assert.ok(manifest.inputs[input], `${input} is recorded`);
    assert.equal(manifest.inputs[input]?.size, statSync(join(repoDir, input)).size);
  }
  const code = readdirSync(out).filter((f) => f.endsWith(".js")).map((f) => readFileSync(join(out, f), "utf8")).join("\n");
  // Built-in punycode from outside node_modules draws a deprecation warning on stderr.
  assert.doesNotMatch(code, /__require\("punycode"\)/);
  assert.match(code, /from "better-sqlite3"|require\("better-sqlite3"\)/, "the native module stays in node_modules");
  for (const pkg of ["psl", "express", "postgres", "http-signature", "har-validator"]) assert.match(code, new RegExp(`"lazy-require:${pkg} from node_modules/`), `${pkg} is loaded on first use`);

  // The bundle's main() as src/main.ts calls it, against the sources': the same words.
  const run = (entry: string): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, ["--disable-warning=ExperimentalWarning", "--input-type=module", "-e", `const { main } = await import(${JSON.stringify(entry)}); await main(["--bogus"], { from: "bundle" });`], { encoding: "utf8", timeout: 30_000 });
  const bundled = run(pathToFileURL(join(out, manifest.entry)).href);
  const sources = run(pathToFileURL(join(repoDir, "src", "run.ts")).href);
  assert.equal(bundled.status, 2);
  assert.equal(bundled.stderr, sources.stderr);
  assert.match(String(bundled.stderr), /Unknown option --bogus/);
});
