import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";

export interface MainArgs {
  /** --config: the config file; undefined: BOT_CONFIG, else config/config.yaml if there is one. */
  configFile: string | undefined;
  /** --check: check every part, print a table, exit. */
  check: boolean;
  help: boolean;
}

export const mainUsage = `Usage: npm start -- [--config <file>] [--check]
  --config <file>  the configuration file (default: BOT_CONFIG, else config/config.yaml)
  --check          check the configuration, the homeserver and token, OpenCode, Letta, the
                   database, the workspace and the sandbox; print what passes and what not; exit
                   (also: npm run check)`;

/** Reads the bot's command line; a flag it does not know, or --config without a file, is a UsageError. */
export function parseMainArgs(argv: string[]): MainArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string", short: "c" },
        check: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    throw new UsageError(plainParseError(err, argv));
  }
  if (values.config !== undefined && values.config.trim() === "") throw new UsageError("--config needs a file name, e.g. --config config/config.yaml");
  return { configFile: values.config, check: values.check, help: values.help };
}

/** node:util's messages are written for programmers ("argument is ambiguous"); these say what to type. */
function plainParseError(err: unknown, argv: string[]): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && /config/.test(message)) return "--config needs a file name, e.g. --config config/config.yaml";
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") return message.split("\n")[0] ?? message;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const flag = /'([^']+)'/.exec(message)?.[1] ?? argv.find((a) => a.startsWith("-")) ?? "";
    return `Unknown option ${flag}; the bot knows --config <file>, --check and --help`;
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    const word = /'([^']+)'/.exec(message)?.[1] ?? "";
    return `Unexpected argument ${word}; a config file is given as --config ${word}`;
  }
  return message;
}
