import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { bundleState, codeCacheFile, type RunMain } from "./bundle.ts";
import { loadBundle } from "./bundle-load.ts";

/**
 * Runs src/run.ts: from the prebuilt bundle while it was built from exactly the files here now
 * (bundle.ts), else from the sources. Same program either way; the bundle starts in less than half
 * the time. BOT_NO_BUNDLE=1 runs the sources regardless.
 * `from`: src/main.ts ("sources") or the launcher built with the bundle (dist/bot/start.mjs). The
 * launcher is as old as the bundle: when that is stale, so may the launcher be, and src/main.ts runs.
 */
export async function launch(repoDir: string, from: "sources" | "launcher"): Promise<void> {
  const argv = process.argv.slice(2);
  const bundle = process.env.BOT_NO_BUNDLE ? { fresh: false as const, why: "BOT_NO_BUNDLE is set" } : bundleState(repoDir);
  if (bundle.fresh) {
    const app = loadBundle(bundle.entry, codeCacheFile(repoDir));
    await app.main(argv, { from: "bundle", codeCache: app.codeCache, onReady: () => app.saveCodeCache() });
    return;
  }
  const source = (file: string): string => pathToFileURL(join(repoDir, "src", file)).href;
  if (from === "launcher") {
    await import(source("main.ts"));
    return;
  }
  const { main } = (await import(source("run.ts"))) as { main: RunMain };
  await main(argv, { from: "sources", why: bundle.why });
}
