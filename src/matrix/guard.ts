import type { Logger } from "../log.ts";

type SyncHandler = (roomId: string, event: Record<string, unknown>) => unknown;

/**
 * Wraps a handler of matrix-bot-sdk's sync events (`room.message`, `room.event`, …) so that it
 * never throws into the SDK. The SDK emits a sync's events one after another; a throw ends the
 * handling of that whole batch, and since its sync token has already moved on in memory, the
 * events after the bad one are never seen. Here a throw (or a rejected promise) is logged with
 * the event's ids, and the batch goes on with the next event.
 */
export function guardSyncHandler(log: Pick<Logger, "error">, name: string, handler: SyncHandler): SyncHandler {
  const report = (err: unknown, roomId: string, event: Record<string, unknown> | undefined): void => {
    const ids = { roomId, eventId: idOf(event, "event_id"), type: idOf(event, "type"), sender: idOf(event, "sender") };
    log.error({ err, handler: name, ...ids }, "could not take in a Matrix event; skipped it, the sync goes on");
  };
  return (roomId, event) => {
    try {
      const result = handler(roomId, event);
      if (result instanceof Promise) result.catch((err: unknown) => report(err, roomId, event));
    } catch (err) {
      report(err, roomId, event);
    }
  };
}

/** A field of an event that may be anything (even a throwing getter): a string or undefined. */
function idOf(event: Record<string, unknown> | undefined, key: string): string | undefined {
  try {
    const v = event?.[key];
    return typeof v === "string" ? v.slice(0, 200) : undefined;
  } catch {
    return undefined;
  }
}
