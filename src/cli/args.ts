import { parseArgs } from "node:util";

export class CliUsageError extends Error {
  override name = "CliUsageError";
}

export interface SendArgs {
  room: string;
  prompt: string;
  thread: string | undefined;
  session: string | undefined;
  notifyOnly: boolean;
  at: string | undefined;
  config: string | undefined;
}

export const sendUsage = `Usage: send --room <room id | #alias:server> --prompt "<text>"
            [--thread <thread root event id> | --session <ses_…>] [--notify-only]
            [--at <ISO time, e.g. 2030-01-31T09:00:00Z | cron, e.g. "0 9 * * 1-5">] [--config <file>]

Posts the prompt into the room as the bot, and the running bot sends it to OpenCode: in a new
session thread (default), in the given thread, or to the given session. --notify-only posts a
notice and prompts nothing. --at stores it for later (a cron expression repeats it); the bot
fires each occurrence once, also across restarts. \`!oc schedule\` lists them in the room.
Reads the bot's configuration (--config, BOT_CONFIG or config/config.yaml, and the environment)
for the database and the bot's account.`;

/** Reads the command line of `send`; throws CliUsageError with a plain reason. Returns undefined for --help. */
export function parseSendArgs(argv: string[]): SendArgs | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        room: { type: "string" },
        prompt: { type: "string" },
        thread: { type: "string" },
        session: { type: "string" },
        "notify-only": { type: "boolean", default: false },
        at: { type: "string" },
        config: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    throw new CliUsageError((err as Error).message);
  }
  if (values.help) return undefined;
  const room = values.room?.trim() ?? "";
  const prompt = values.prompt?.trim() ?? "";
  // Room ids of room version 12 have no server part (`!abc`); older ones do (`!abc:server`).
  if (!/^(![^\s:]+(:\S+)?|#[^\s:]+:\S+)$/.test(room)) throw new CliUsageError(room ? `--room ${room} is neither a room id (!abc…) nor an alias (#name:server)` : "--room is required");
  if (!prompt) throw new CliUsageError("--prompt is required (the text to send)");
  if (values.thread !== undefined && values.session !== undefined) throw new CliUsageError("give --thread or --session, not both");
  if (values.thread !== undefined && !/^\$\S+$/.test(values.thread)) throw new CliUsageError(`--thread ${values.thread} is not an event id ($…)`);
  if (values.session !== undefined && !/^ses_[A-Za-z0-9]+$/.test(values.session)) throw new CliUsageError(`--session ${values.session} is not a session id (ses_…)`);
  return {
    room,
    prompt,
    thread: values.thread,
    session: values.session,
    notifyOnly: values["notify-only"],
    at: values.at,
    config: values.config,
  };
}
