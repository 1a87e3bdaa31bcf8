// The bot's entry from the sources (`npm start` before a build, the tests without one): runs
// src/run.ts, from the prebuilt bundle when that is current (startup/launch.ts). The built
// launcher, dist/bot/start.mjs, does the same without Node stripping types first (about 55 ms).
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { launch } from "./startup/launch.ts";

await launch(dirname(dirname(fileURLToPath(import.meta.url))), "sources");
