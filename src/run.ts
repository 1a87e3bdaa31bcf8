import { existsSync } from "node:fs";
import { enableCompileCache, flushCompileCache } from "node:module";
import { dirname, join, resolve } from "node:path";
import { ConfigError, configFileOf, loadConfig } from "./config/load.ts";
import { checkStateOutsideAgentReach } from "./config/state-paths.ts";
import { mainUsage, parseMainArgs } from "./startup/args.ts";
import { StartupError, UsageError, configErrorText, messageOf } from "./startup/errors.ts";
import type { Launch } from "./startup/bundle.ts";
import { verifyMatrixToken } from "./startup/matrix-check.ts";
import { refusePlaceholders } from "./startup/placeholders.ts";

// What the bot does when started (src/main.ts, or the built launcher; startup/launch.ts picks the
// bundle or the sources). Only the arguments and the configuration are loaded up front: a mistake
// there is said without loading the rest. The rest (the Matrix SDK, the backends) comes from the
// bundle with the code V8 compiled last time (startup/bundle-load.ts), or from the sources with
// Node's compile cache, kept beside the database.

// Whatever stops the start is said on stderr in one or two plain lines naming the setting;
// exit code 2 when a setting must change, 1 otherwise. The JSON log keeps the detail.
const stop = (text: string, code: number): never => {
  process.stderr.write(`${text}\n`);
  process.exit(code);
};

const shutdownTimeoutMs = 20_000;

/**
 * V8's compiled code of the modules loaded from here on, reused by the next start: in the database's
 * directory, which the agent's sandbox hides (not in /tmp, which a sandboxed agent shares and could
 * fill with code the bot would then run).
 * Only when that directory exists already (a first start creates nothing before the database does);
 * NODE_COMPILE_CACHE, when set, wins, NODE_DISABLE_COMPILE_CACHE=1 turns it off.
 */
export function compileCacheDir(databasePath: string): string | undefined {
  if (databasePath === "" || databasePath === ":memory:" || databasePath.startsWith("file:")) return undefined;
  const dir = dirname(resolve(databasePath));
  return existsSync(dir) ? join(dir, "node-compile-cache") : undefined;
}

export async function main(argv: string[], launch: Launch): Promise<void> {
  let args;
  try {
    args = parseMainArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) stop(`${err.message}\n${mainUsage.split("\n")[0]} (--help for more)`, 2);
    throw err;
  }
  if (args.help) {
    process.stdout.write(`${mainUsage}\n`);
    process.exit(0);
  }
  if (args.check) {
    const { runCheck } = await import("./check.ts");
    process.exit(await runCheck(args.configFile, (text) => process.stdout.write(text)));
  }
  const configFile = configFileOf({ file: args.configFile });

  let config;
  try {
    config = loadConfig({ file: args.configFile });
    checkStateOutsideAgentReach(config, configFile);
    refusePlaceholders(config);
  } catch (err) {
    if (err instanceof ConfigError) stop(configErrorText(err.message, configFile), 2);
    throw err;
  }

  // The bundle keeps its own compiled code (src/startup/bundle-load.ts); the sources use Node's compile cache.
  const cacheDir = process.env.NODE_COMPILE_CACHE || launch.from === "bundle" ? undefined : compileCacheDir(config.database.path);
  const cache = cacheDir ? enableCompileCache(cacheDir) : undefined;
  // The homeserver's answer to the token is awaited by startBot after the database opened (so a
  // database problem is still said first); asked now, it comes while the rest loads.
  const account = config.matrix.accessToken === undefined ? undefined : verifyMatrixToken(config.matrix.homeserverUrl, config.matrix.accessToken);
  account?.catch(() => undefined); // awaited (and said) in startBot
  const [{ addSecret, bridgeMatrixSdkLogs, createLogger, defaultLogFormat }, { startBot }] = await Promise.all([import("./log.ts"), import("./app.ts")]);

  const secrets = [config.matrix.accessToken, config.matrix.password, config.opencode.password, config.notify.token, config.letta?.apiToken].filter((s): s is string => !!s);
  // More are learnt while starting (the token of a password login, the embedded server's password): addSecret.
  for (const s of secrets) addSecret(s);
  const log = createLogger(config.log.level);
  bridgeMatrixSdkLogs(log);
  log.debug({ from: launch.from, ...(launch.why ? { why: launch.why } : {}), compileCache: cache?.directory ?? process.env.NODE_COMPILE_CACHE ?? null, ...(launch.codeCache ? { codeCache: launch.codeCache } : {}) }, "running");

  try {
    const bot = await startBot(config, log, { configFile, account });
    const shutdown = (signal: string): void => {
      log.info({ signal }, "shutting down");
      const timer = setTimeout(() => {
        log.error("shutdown took too long; exiting");
        process.exit(1);
      }, shutdownTimeoutMs);
      timer.unref();
      bot.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, "error while stopping");
          process.exit(1);
        },
      );
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
    // Written now rather than at exit: the next start profits even if this process is killed.
    if (cache) flushCompileCache();
    launch.onReady?.();
  } catch (err) {
    const known = err instanceof StartupError || err instanceof ConfigError;
    const text = known ? err.message : `Could not start: ${messageOf(err).split("\n")[0]}`;
    // On a terminal the plain line below says all of a known problem (the detail at debug level); a log collector keeps it as JSON.
    if (known && defaultLogFormat() === "pretty") log.debug({ err }, "could not start");
    else log.fatal({ err }, "could not start");
    stop(text, err instanceof StartupError ? err.exitCode : err instanceof ConfigError ? 2 : 1);
  }
}
