import { startBot } from "./app.ts";
import { ConfigError, configFileOf, loadConfig } from "./config/load.ts";
import { checkStateOutsideAgentReach } from "./config/state-paths.ts";
import { addSecret, bridgeMatrixSdkLogs, createLogger } from "./log.ts";

const configFile = process.argv.includes("--config") ? process.argv[process.argv.indexOf("--config") + 1] : undefined;

let config;
try {
  config = loadConfig({ file: configFile });
  checkStateOutsideAgentReach(config, configFileOf({ file: configFile }));
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const secrets = [config.matrix.accessToken, config.matrix.password, config.opencode.password, config.notify.token, config.letta?.apiToken].filter((s): s is string => !!s);
// More are learnt while starting (the token of a password login, the embedded server's password): addSecret.
for (const s of secrets) addSecret(s);
const log = createLogger(config.log.level);
bridgeMatrixSdkLogs(log);

const shutdownTimeoutMs = 20_000;
try {
  const bot = await startBot(config, log, { configFile: configFileOf({ file: configFile }) });
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
  log.fatal({ err }, "could not start");
  process.exit(1);
}
