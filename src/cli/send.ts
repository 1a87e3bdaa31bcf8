#!/usr/bin/env -S node --disable-warning=ExperimentalWarning
// `npm run send -- --room … --prompt …`: a prompt without a person typing, for CI jobs and cron.
// The bot ignores its own messages (no loops), so the prompt does not travel through the room:
// it goes into the bot's SQLite database, which the running bot polls. The message in the room
// is for the people there; it becomes the thread the answer streams into.
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Credentials } from "../matrix/bot-client.ts";
import { FetchClient, HomeserverTimeout } from "../matrix/fetch-client.ts";
import { occurrenceTxnId, promptMessage, scheduledNotice } from "../schedule/messages.ts";
import { ScheduleStore } from "../schedule/store.ts";
import { ScheduleError, formatTime, parseWhen } from "../schedule/when.ts";
import { openDatabase } from "../store/db.ts";
import { KeyValue } from "../store/key-value.ts";
import { ThreadStore } from "../store/threads.ts";
import { CliUsageError, parseSendArgs, sendUsage, type SendArgs } from "./args.ts";

class Failure extends Error {}

async function passwordToken(creds: Credentials, kv: KeyValue): Promise<string> {
  const [{ resolveAccessToken }, { passwordLogin }] = await Promise.all([import("../matrix/bot-client.ts"), import("../startup/matrix-check.ts")]);
  return resolveAccessToken(creds, kv, async (c) => (await passwordLogin(c, c.deviceName)).accessToken);
}

async function send(args: SendArgs): Promise<string> {
  const config = loadConfig({ file: args.config });
  const db = openDatabase(config.database.path);
  try {
    // matrix-bot-sdk (slow to load, noisy) only for a password login; the same login as the bot's start.
    const token = config.matrix.accessToken ?? (await passwordToken(config.matrix, new KeyValue(db)));
    const hs = new FetchClient(config.matrix.homeserverUrl, token, { timeoutMs: config.matrix.requestTimeoutMs });
    const roomId = await hs.resolveRoom(args.room);
    const when = parseWhen(args.at, Date.now(), config.schedule.timezone);
    const threads = new ThreadStore(db);
    if (args.thread !== undefined && threads.get(roomId, args.thread)?.backend !== "opencode") {
      throw new Failure(`there is no OpenCode session thread with root ${args.thread} in ${roomId}`);
    }
    // Where the room sees the prompt: in the session's thread if it has one here, else at the top level.
    const threadRoot = args.thread ?? (args.session ? threads.bySession("opencode", args.session).find((t) => t.roomId === roomId)?.rootEventId : undefined);
    const store = new ScheduleStore(db);
    const now = args.at === undefined;
    const id = store.insert({
      roomId,
      threadRoot: args.thread ?? null,
      sessionId: args.session ?? null,
      text: args.prompt,
      notifyOnly: args.notifyOnly,
      dueAt: when.dueAt,
      cron: when.cron,
      createdBy: "cli",
      // Held while its message is posted: the bot must not post one of its own meanwhile (unless
      // this process dies: the bot takes over a row held longer than heldTimeoutMs).
      status: now ? "held" : "pending",
    });
    const row = store.get(id)!;
    if (!now) {
      await hs.sendMessage(roomId, `sched-notice.${row.createdAt}.${id}`, scheduledNotice(row, threadRoot)).catch((err: unknown) => {
        process.stderr.write(`warning: scheduled, but the notice in the room failed: ${(err as Error).message}\n`);
      });
      return `#${id} scheduled for ${formatTime(row.dueAt)}${row.cron ? ` (cron ${row.cron}, ${config.schedule.timezone})` : ""} in ${roomId}`;
    }
    let eventId: string;
    try {
      eventId = await hs.sendMessage(roomId, occurrenceTxnId(row), promptMessage(row, threadRoot));
    } catch (err) {
      if (err instanceof HomeserverTimeout) {
        // It may have been posted: the bot posts it with the same transaction id (never twice).
        store.unhold(id);
        process.stderr.write(`warning: ${err.message}\n`);
        return `#${id} queued for ${roomId}: the bot posts it (once) and answers within ${config.schedule.pollIntervalMs} ms of running`;
      }
      store.deleteHeld(id);
      throw err;
    }
    if (args.notifyOnly) {
      store.fired(id, null);
      return `#${id} notice posted in ${roomId}: ${eventId}`;
    }
    store.release(id, eventId);
    return `#${id} sent to ${roomId} as ${eventId}; the bot picks it up within ${config.schedule.pollIntervalMs} ms of running`;
  } finally {
    db.close();
  }
}

let args: SendArgs | undefined;
try {
  args = parseSendArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n\n${sendUsage}\n`);
  process.exit(2);
}
if (!args) {
  process.stdout.write(`${sendUsage}\n`);
  process.exit(0);
}
try {
  process.stdout.write(`${await send(args)}\n`);
} catch (err) {
  const known = err instanceof ConfigError || err instanceof ScheduleError || err instanceof CliUsageError;
  process.stderr.write(`send: ${(err as Error).message}\n`);
  process.exit(known ? 2 : 1);
}
