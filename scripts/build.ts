// Builds the bundle that src/main.ts runs while it is current (src/startup/bundle.ts): src/run.ts
// and everything it imports, node_modules included, as ES modules in dist/bot/, plus inputs.json
// (each file it was built from, with size, time and hash). Native better-sqlite3 stays in node_modules.
//   npm run build            (also `npm install`'s prepare step)
//   node scripts/build.ts --if-possible   without esbuild (an install without dev packages): says so, exits 0;
//                                         a failed build, too (the bot then runs the sources)
//   node scripts/build.ts --out DIR       elsewhere (the tests); src/main.ts only looks in dist/bot
// The image installs esbuild apart and points NODE_PATH at it (Dockerfile).
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import type * as Esbuild from "esbuild";
import { bundleDir, bundleEntryName, manifestName, stampOf, type BundleManifest } from "../src/startup/bundle.ts";

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

// Packages that a dependency requires when it loads but that the bot never uses, or only later: in
// the bundle they are loaded on first use instead (the same library, later). Each costs a few to
// tens of ms of a 0.5 s start (measured with --cpu-prof): psl parses its list of public suffixes
// (tough-cookie needs it for cookies, and the bot sends none); express serves an appservice and
// postgres a Postgres store, matrix-bot-sdk parts the bot does not use; http-signature and
// har-validator are request options the SDK does not set. A consumer only calls, constructs or
// reads properties of these (checked when this list was made), which the stand-in forwards.
const lazyRequires: Array<{ pkg: string; from: RegExp }> = [
  { pkg: "psl", from: /node_modules\/tough-cookie\// },
  { pkg: "express", from: /node_modules\/matrix-bot-sdk\/lib\/appservice\/Appservice\.js$/ },
  { pkg: "postgres", from: /node_modules\/matrix-bot-sdk\/lib\/storage\/SimplePostgresStorageProvider\.js$/ },
  { pkg: "http-signature", from: /node_modules\/request\/request\.js$/ },
  { pkg: "har-validator", from: /node_modules\/request\/lib\/har\.js$/ },
];
const lazyRequire: Esbuild.Plugin = {
  name: "lazy-require",
  setup(b) {
    for (const { pkg, from } of lazyRequires) {
      const filter = new RegExp(`^${pkg.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")}$`);
      // Resolved later from the importer's directory, as the importer would (a nested copy stays the one it gets).
      b.onResolve({ filter }, (args) => (args.namespace === "file" && from.test(args.importer) ? { path: `${pkg} from ${relative(repoDir, dirname(args.importer))}`, namespace: "lazy-require", pluginData: { pkg, dir: dirname(args.importer) } } : undefined));
    }
    b.onLoad({ filter: /.*/, namespace: "lazy-require" }, (args) => ({
      contents: `let real; const load = () => (real ??= require(${JSON.stringify((args.pluginData as { pkg: string }).pkg)}));
module.exports = new Proxy(function () {}, {
  apply: (_t, self, list) => Reflect.apply(load(), self, list),
  construct: (_t, list, target) => Reflect.construct(load(), list, target),
  get: (_t, key) => Reflect.get(load(), key),
  has: (_t, key) => Reflect.has(load(), key),
});`,
      resolveDir: (args.pluginData as { dir: string }).dir,
      loader: "js",
    }));
  },
};

const outDir = opts.out ? resolve(opts.out) : bundleDir(repoDir);
const tmpDir = `${outDir}.tmp-${process.pid}`;
rmSync(tmpDir, { recursive: true, force: true });
mkdirSync(tmpDir, { recursive: true });
const t0 = performance.now();
try {
  const result = await esbuild.build({
    absWorkingDir: repoDir,
    entryPoints: { main: "src/run.ts" },
    entryNames: "[name]",
    chunkNames: "chunk-[hash]",
    outdir: tmpDir,
    bundle: true,
    // Dynamic imports (the backends that are not configured, --check) stay separate files, loaded when needed.
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node22",
    // Class and function names as in the sources: error types in the log, `constructor.name` checks.
    keepNames: true,
    sourcemap: "linked",
    sourcesContent: false,
    metafile: true,
    logLevel: "warning",
    external: ["better-sqlite3"],
    // Node warns (DEP0040) when code outside node_modules requires its built-in punycode, as
    // tough-cookie does; bundled, that code is outside. The package is the same library (via psl).
    alias: { punycode: "punycode/punycode.js" },
    plugins: [lazyRequire],
    // CommonJS packages inside an ES module call require() for Node's built-ins.
    banner: { js: 'import { createRequire as __bundleCreateRequire } from "node:module"; const require = __bundleCreateRequire(import.meta.url);' },
  });
  const inputs: BundleManifest["inputs"] = {};
  // Files only: a plugin's module ("lazy-require:psl from …") is made by this script.
  for (const file of Object.keys(result.metafile.inputs).sort()) if (!/^[\w-]+:/.test(file)) inputs[file] = stampOf(join(repoDir, file));
  const manifest: BundleManifest = { version: 1, entry: bundleEntryName, inputs };
  writeFileSync(join(tmpDir, manifestName), `${JSON.stringify(manifest)}\n`);
  rmSync(outDir, { recursive: true, force: true });
  renameSync(tmpDir, outDir);
  const js = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith(".js"));
  const bytes = js.reduce((n, [, o]) => n + o.bytes, 0);
  const files = js.length;
  say(`${relative(repoDir, outDir)}: ${files} files, ${(bytes / 1e6).toFixed(1)} MB from ${Object.keys(inputs).length} inputs in ${Math.round(performance.now() - t0)} ms`);
} catch (err) {
  rmSync(tmpDir, { recursive: true, force: true });
  if (!ifPossible) throw err;
  // A failed bundle must not fail `npm install`: the bot runs from the sources, only slower to start.
  say(`no bundle (node src/main.ts runs the sources): ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
}
