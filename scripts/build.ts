// Builds the bundle that the bot runs while it is current (src/startup/bundle.ts, launch.ts):
// src/run.ts and everything it imports, node_modules included, as one CommonJS file dist/bot/app.cjs
// (loaded by src/startup/bundle-load.ts with V8's code cache of the last start), the launcher
// dist/bot/start.mjs (src/startup/bundle-entry.ts), and inputs.json: each file they were built
// from, with size, time and hash. Native better-sqlite3 stays in node_modules.
//   npm run build            (also `npm install`'s prepare step)
//   node scripts/build.ts --if-possible   without esbuild (an install without dev packages): says so, exits 0;
//                                         a failed build, too (the bot then runs the sources)
//   node scripts/build.ts --out DIR       elsewhere (the tests); the launcher only looks in dist/bot
// The image installs esbuild apart and points NODE_PATH at it (Dockerfile).
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import type * as Esbuild from "esbuild";
import { bundleDir, bundleEntryName, launcherName, manifestName, stampOf, type BundleManifest } from "../src/startup/bundle.ts";

const repoDir = join(import.meta.dirname, "..");
const { values: opts } = parseArgs({ options: { "if-possible": { type: "boolean", default: false }, out: { type: "string" } } });
const ifPossible = opts["if-possible"];
const say = (line: string): void => void process.stdout.write(`[build] ${line}\n`);

let esbuild: typeof Esbuild;
try {
  // require, not import: it also finds esbuild through NODE_PATH (the image's builder).
  esbuild = createRequire(import.meta.url)("esbuild") as typeof Esbuild;
} catch {
  if (!ifPossible) throw new Error("esbuild is not installed: npm install (with the dev packages)");
  say("esbuild is not installed (no dev packages): no bundle; node src/main.ts runs the sources");
  process.exit(0);
}

// Packages that a dependency requires when it loads but that the bot never uses, or only later:
// they are left out of the bundle, and a stand-in loads them from node_modules on first use (the
// same library, later; node_modules is there for better-sqlite3 anyway). Each costs a few to tens
// of ms of a 0.5 s start (measured with --cpu-prof), and bundled but never run they still cost
// reading and caching: psl parses its list of public suffixes (tough-cookie needs it for cookies,
// and the bot sends none); express (with body-parser and iconv-lite) serves an appservice and
// postgres a Postgres store, lowdb (with lodash) a file store, matrix-bot-sdk parts the bot does not
// use; http-signature (sshpk, tweetnacl) and har-validator (ajv) are request options the SDK does not
// set; html-to-text makes the plain body of the SDK's HTML replies, which the bot makes itself. A
// consumer only calls, constructs or reads properties of these (checked when this list was made),
// which the stand-in forwards.
const lazyRequires: Array<{ pkg: string; from: RegExp }> = [
  { pkg: "psl", from: /node_modules\/tough-cookie\// },
  { pkg: "express", from: /node_modules\/matrix-bot-sdk\/lib\/appservice\/Appservice\.js$/ },
  { pkg: "postgres", from: /node_modules\/matrix-bot-sdk\/lib\/storage\/SimplePostgresStorageProvider\.js$/ },
  { pkg: "lowdb", from: /node_modules\/matrix-bot-sdk\/lib\/storage\/(SimpleFs|RustSdkCrypto)StorageProvider\.js$/ },
  { pkg: "lowdb/adapters/FileSync", from: /node_modules\/matrix-bot-sdk\/lib\/storage\/(SimpleFs|RustSdkCrypto)StorageProvider\.js$/ },
  { pkg: "html-to-text", from: /node_modules\/matrix-bot-sdk\/lib\/MatrixClient\.js$/ },
  { pkg: "http-signature", from: /node_modules\/request\/request\.js$/ },
  { pkg: "har-validator", from: /node_modules\/request\/lib\/har\.js$/ },
];

const outDir = opts.out ? resolve(opts.out) : bundleDir(repoDir);

const lazyRequire: Esbuild.Plugin = {
  name: "lazy-require",
  setup(b) {
    for (const { pkg, from } of lazyRequires) {
      const filter = new RegExp(`^${pkg.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")}$`);
      b.onResolve({ filter }, (args) => (args.namespace === "file" && from.test(args.importer) ? { path: `${pkg} from ${relative(repoDir, dirname(args.importer))}`, namespace: "lazy-require", pluginData: { pkg, dir: dirname(args.importer) } } : undefined));
    }
    b.onLoad({ filter: /.*/, namespace: "lazy-require" }, (args) => {
      const { pkg, dir } = args.pluginData as { pkg: string; dir: string };
      // Not require(): esbuild would bundle that. __bundleRequireFrom(dir) (given by the loader,
      // bundle-load.ts) requires as a file in `dir`, relative to the bundle, would: the copy its importer would get.
      const from = `${relative(outDir, dir).split(sep).join("/")}/`;
      return {
        contents: `let real; const load = () => (real ??= __bundleRequireFrom(${JSON.stringify(from)})(${JSON.stringify(pkg)}));
module.exports = new Proxy(function () {}, {
  apply: (_t, self, list) => Reflect.apply(load(), self, list),
  construct: (_t, list, target) => Reflect.construct(load(), list, target),
  get: (_t, key) => Reflect.get(load(), key),
  has: (_t, key) => Reflect.has(load(), key),
});`,
        loader: "js",
      };
    });
  },
};

const tmpDir = `${outDir}.tmp-${process.pid}`;
rmSync(tmpDir, { recursive: true, force: true });
mkdirSync(tmpDir, { recursive: true });
const t0 = performance.now();
try {
  const common = {
    absWorkingDir: repoDir,
    bundle: true,
    platform: "node",
    target: "node22",
    // Class and function names as in the sources: error types in the log, `constructor.name` checks.
    keepNames: true,
    sourcemap: "linked",
    sourcesContent: false,
    metafile: true,
    logLevel: "warning",
  } satisfies Esbuild.BuildOptions;
  const app = await esbuild.build({
    ...common,
    entryPoints: ["src/run.ts"],
    outfile: join(tmpDir, bundleEntryName),
    // One file, dynamic imports (the backends that are not configured, --check) included: a part
    // that never runs costs only its reading, since the code cache holds compiled code, not source.
    format: "cjs",
    external: ["better-sqlite3"],
    // Node warns (DEP0040) when code outside node_modules requires its built-in punycode, as
    // tough-cookie does; bundled, that code is outside. The package is the same library (via psl).
    alias: { punycode: "punycode/punycode.js" },
    plugins: [lazyRequire],
    // A CommonJS file has no import.meta; the loader gives the bundle's URL (src/store/db.ts finds migrations/ by it).
    define: { "import.meta.url": "__bundleImportMetaUrl" },
    minifyWhitespace: true,
    minifySyntax: true,
  });
  const launcher = await esbuild.build({ ...common, entryPoints: ["src/startup/bundle-entry.ts"], outfile: join(tmpDir, launcherName), format: "esm" });
  const inputs: BundleManifest["inputs"] = {};
  // Files only: a plugin's module ("lazy-require:psl from …") is made by this script.
  const files = new Set([...Object.keys(app.metafile.inputs), ...Object.keys(launcher.metafile.inputs)]);
  for (const file of [...files].sort()) if (!/^[\w-]+:/.test(file)) inputs[file] = stampOf(join(repoDir, file));
  const manifest: BundleManifest = { version: 2, entry: bundleEntryName, inputs };
  writeFileSync(join(tmpDir, manifestName), `${JSON.stringify(manifest)}\n`);
  rmSync(outDir, { recursive: true, force: true });
  renameSync(tmpDir, outDir);
  const bytes = Object.entries(app.metafile.outputs).filter(([f]) => f.endsWith(".cjs")).reduce((n, [, o]) => n + o.bytes, 0);
  say(`${relative(repoDir, outDir)}: ${bundleEntryName} ${(bytes / 1e6).toFixed(1)} MB and ${launcherName}, from ${Object.keys(inputs).length} inputs, in ${Math.round(performance.now() - t0)} ms`);
} catch (err) {
  rmSync(tmpDir, { recursive: true, force: true });
  if (!ifPossible) throw err;
  // A failed bundle must not fail `npm install`: the bot runs from the sources, only slower to start.
  say(`no bundle (node src/main.ts runs the sources): ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
}
