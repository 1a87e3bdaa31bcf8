import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// The prebuilt bundle (`npm run build`, scripts/build.ts): the same program as src/ in a few
// JavaScript files that Node neither type-strips nor resolves file by file, so it starts in under
// half the time. src/main.ts runs it only while every file it was built from is still as it was;
// after any edit, checkout or `npm install` that changed one, src/main.ts runs the sources.

/** Where the bundle lies: two levels below the repository, as src/<dir>/ is (src/store/db.ts finds migrations/ at ../../). */
export const bundleDir = (repoDir: string): string => join(repoDir, "dist", "bot");
export const manifestName = "inputs.json";
export const bundleEntryName = "main.js";

export interface InputStamp {
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** Written beside the bundle: every file it was built from (relative to the repository), as it was then. */
export interface BundleManifest {
  version: 1;
  entry: string;
  inputs: Record<string, InputStamp>;
}

export const sha256Of = (file: string): string => createHash("sha256").update(readFileSync(file)).digest("hex");

export function stampOf(file: string): InputStamp {
  const st = statSync(file);
  return { size: st.size, mtimeMs: st.mtimeMs, sha256: sha256Of(file) };
}

export type BundleState = { fresh: true; entry: string } | { fresh: false; why: string };

/**
 * Is there a bundle built from exactly the files that are here now? Size and modification time
 * first (a stat each, about 1,500 files); a file whose time differs but whose content hash is the
 * recorded one (copied with new times, e.g. into an image) still counts as unchanged.
 */
export function bundleState(repoDir: string, dir = bundleDir(repoDir)): BundleState {
  let manifest: BundleManifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, manifestName), "utf8")) as BundleManifest;
  } catch {
    return { fresh: false, why: "not built (npm run build)" };
  }
  if (manifest.version !== 1 || typeof manifest.inputs !== "object" || manifest.inputs === null) return { fresh: false, why: "built by another version of scripts/build.ts" };
  const base = `${repoDir}/`;
  for (const [rel, was] of Object.entries(manifest.inputs)) {
    const file = base + rel; // not join(): about 1,500 times, before anything is optimised
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st) return { fresh: false, why: `${rel} is gone` };
    if (st.size !== was.size) return { fresh: false, why: `${rel} changed` };
    if (st.mtimeMs !== was.mtimeMs && sha256Of(file) !== was.sha256) return { fresh: false, why: `${rel} changed` };
  }
  return { fresh: true, entry: pathToFileURL(join(dir, manifest.entry)).href };
}
