import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

// The prebuilt bundle (`npm run build`, scripts/build.ts): the same program as src/ in one
// CommonJS file that Node neither type-strips nor resolves file by file, loaded with the code V8
// compiled for it during the last start (bundle-load.ts), and a launcher in JavaScript. It runs only
// while every file it was built from is still as it was; after any edit, checkout or `npm install`
// that changed one, the sources run.

/** Where the bundle lies: two levels below the repository, as src/<dir>/ is (src/store/db.ts finds migrations/ at ../../). */
export const bundleDir = (repoDir: string): string => join(repoDir, "dist", "bot");
export const manifestName = "inputs.json";
/** The program (src/run.ts and all it imports). */
export const bundleEntryName = "app.cjs";
/** The entry as JavaScript (src/startup/bundle-entry.ts): `node dist/bot/start.mjs`. */
export const launcherName = "start.mjs";
/**
 * The code V8 compiled while the bot started, kept for the next start. Beside the code it was
 * compiled from, it is as trusted as that code: whoever can write here can change the bundle itself.
 * (The image makes only this directory writable for the bot's user.)
 */
export const codeCacheFile = (repoDir: string): string => join(bundleDir(repoDir), "code-cache", `${bundleEntryName}.cache`);

/** The file to run the bot with: the launcher when built (a start without type stripping), else src/main.ts. */
export function botEntryFile(repoDir: string): string {
  const launcher = join(bundleDir(repoDir), launcherName);
  return existsSync(launcher) ? launcher : join(repoDir, "src", "main.ts");
}

/** How the launcher (launch.ts) started src/run.ts's main: from the bundle, or from the sources and why (said at debug level). */
export interface Launch {
  from: "bundle" | "sources";
  why?: string;
  /** The bundle's code cache (bundle-load.ts), said at debug level. */
  codeCache?: string;
  /** Called once the bot is ready: the launcher keeps the code compiled so far for the next start. */
  onReady?: () => void;
}

/** src/run.ts's main, as the launcher calls it. */
export type RunMain = (argv: string[], launch: Launch) => Promise<void>;

export interface InputStamp {
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** Written beside the bundle: every file it was built from (relative to the repository), as it was then. */
export interface BundleManifest {
  version: 2;
  entry: string;
  inputs: Record<string, InputStamp>;
}

export const sha256Of = (file: string): string => createHash("sha256").update(readFileSync(file)).digest("hex");

export function stampOf(file: string): InputStamp {
  const st = statSync(file);
  return { size: st.size, mtimeMs: st.mtimeMs, sha256: sha256Of(file) };
}

/** `entry`: the bundle's program file (a path). */
export type BundleState = { fresh: true; entry: string } | { fresh: false; why: string };

/**
 * Is there a bundle built from exactly the files that are here now? Size and modification time
 * first (a stat each, about 1,100 files, ≈ 19 ms); a file whose time differs but whose content hash is the
 * recorded one (copied with new times, e.g. into an image) still counts as unchanged.
 */
export function bundleState(repoDir: string, dir = bundleDir(repoDir)): BundleState {
  let manifest: BundleManifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, manifestName), "utf8")) as BundleManifest;
  } catch {
    return { fresh: false, why: "not built (npm run build)" };
  }
  if (manifest.version !== 2 || typeof manifest.inputs !== "object" || manifest.inputs === null) return { fresh: false, why: "built by another version of scripts/build.ts" };
  const base = `${repoDir}/`;
  for (const [rel, was] of Object.entries(manifest.inputs)) {
    const file = base + rel; // not join(): about 1,100 times, before anything is optimised
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st) return { fresh: false, why: `${rel} is gone` };
    if (st.size !== was.size) return { fresh: false, why: `${rel} changed` };
    if (st.mtimeMs !== was.mtimeMs && sha256Of(file) !== was.sha256) return { fresh: false, why: `${rel} changed` };
  }
  return { fresh: true, entry: join(dir, manifest.entry) };
}
