// The bot's entry (`npm start`, the image's CMD, the tests): runs src/run.ts, from the
// prebuilt bundle in dist/bot when that was built from exactly the files here now (scripts/build.ts,
// `npm run build`, also run by `npm install`), else from the sources. Same program either way; the
// bundle starts in less than half the time. BOT_NO_BUNDLE=1 runs the sources regardless.
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleState } from "./startup/bundle.ts";
import type { Launch } from "./run.ts";

const repoDir = dirname(dirname(fileURLToPath(import.meta.url)));
const bundle = process.env.BOT_NO_BUNDLE ? { fresh: false as const, why: "BOT_NO_BUNDLE is set" } : bundleState(repoDir);
const launch: Launch = bundle.fresh ? { from: "bundle" } : { from: "sources", why: bundle.why };
const { main } = (await import(bundle.fresh ? bundle.entry : "./run.ts")) as typeof import("./run.ts");
await main(process.argv.slice(2), launch);
