import type { BotConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { TurnEngine } from "../turns/engine.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { ThreadStore } from "../store/threads.ts";
import { LettaApi } from "./api.ts";
import { LettaBackend } from "./backend.ts";
import { lettaCommands } from "./commands.ts";
import { LettaRoomStore, LettaTurnStore } from "./store.ts";

export { LettaBackend } from "./backend.ts";

/** The Letta backend when `letta.baseUrl` is configured, else undefined (no `!letta`). */
export function createLettaBackend(
  config: BotConfig,
  deps: { db: Db; threads: ThreadStore; inbox: Inbox; sender: MatrixSender; engine: TurnEngine; displayName: (roomId: string, userId: string) => Promise<string>; log: Logger },
): LettaBackend | undefined {
  const c = config.letta;
  if (c.baseUrl === undefined) return undefined;
  const api = new LettaApi({ baseUrl: c.baseUrl, apiToken: c.apiToken, maxRetries: c.maxRetries, retryDelayMs: c.retryDelayMs, timeoutMs: c.timeoutMs, log: deps.log });
  return new LettaBackend({
    ...deps,
    prefix: c.prefix,
    api,
    rooms: new LettaRoomStore(deps.db),
    turns: new LettaTurnStore(deps.db),
    defaultAgent: c.defaultAgent,
    model: c.model,
    embedding: c.embedding,
    timeoutMs: c.timeoutMs,
  }, lettaCommands);
}
