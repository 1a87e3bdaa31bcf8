import { startBot } from "./app.ts";
import { ConfigError, configFileOf, loadConfig } from "./config/load.ts";
import { checkStateOutsideAgentReach } from "./config/state-paths.ts";
import { addSecret, bridgeMatrixSdkLogs, createLogger, defaultLogFormat } from "./log.ts";
import { mainUsage, parseMainArgs } from "./startup/args.ts";
import { runCheck } from "./check.ts";
import { StartupError, UsageError, configErrorText, messageOf } from "./startup/errors.ts";
import { refusePlaceholders } from "./startup/placeholders.ts";

// Whatever stops the start is said on stderr in one or two plain lines naming the setting;
// exit code 2 when a setting must change, 1 otherwise. The JSON log keeps the detail.
const stop = (text: string, code: number): never => {
  process.stderr.write(`${text}\n`);
  process.exit(code);
};

let args;
try {
  args = parseMainArgs(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) stop(`${err.message}\n${mainUsage.split("\n")[0]} (--help for more)`, 2);
  throw err;
}
if (args.help) {
  process.stdout.write(`${mainUsage}\n`);
  process.exit(0);
}
if (args.check) process.exit(await runCheck(args.configFile, (text) => process.stdout.write(text)));
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

const secrets = [config.matrix.accessToken, config.matrix.password, config.opencode.password, config.notify.token, config.letta?.apiToken].filter((s): s is string => !!s);
// More are learnt while starting (the token of a password login, the embedded server's password): addSecret.
for (const s of secrets) addSecret(s);
const log = createLogger(config.log.level);
bridgeMatrixSdkLogs(log);

const shutdownTimeoutMs = 20_000;
try {
  const bot = await startBot(config, log, { configFile });
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
} catch (err) {
  const known = err instanceof StartupError || err instanceof ConfigError;
  const text = known ? err.message : `Could not start: ${messageOf(err).split("\n")[0]}`;
  // On a terminal the plain line below says all of a known problem (the detail at debug level); a log collector keeps it as JSON.
  if (known && defaultLogFormat() === "pretty") log.debug({ err }, "could not start");
  else log.fatal({ err }, "could not start");
  stop(text, err instanceof StartupError ? err.exitCode : err instanceof ConfigError ? 2 : 1);
}
