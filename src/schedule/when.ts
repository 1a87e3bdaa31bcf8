import { CronExpressionParser } from "cron-parser";

export class ScheduleError extends Error {
  override name = "ScheduleError";
}

/** The first time after `afterMs` that a cron expression (5 fields, or 6 with seconds first) names. */
export function nextCronTime(expr: string, afterMs: number, timezone: string): number {
  const fields = expr.trim().split(/\s+/);
  if (fields.length < 5 || fields.length > 6) throw new ScheduleError(`\`${expr}\` is not a cron expression: it needs 5 fields (minute hour day month weekday), or 6 with seconds first`);
  try {
    return CronExpressionParser.parse(expr, { currentDate: new Date(afterMs), tz: timezone }).next().getTime();
  } catch (err) {
    throw new ScheduleError(`\`${expr}\` is not a valid cron expression: ${(err as Error).message}`);
  }
}

/**
 * Reads `--at`: nothing means now; a value with spaces is a cron expression (recurring);
 * anything else must be an ISO 8601 time (with a zone, or UTC is assumed).
 */
export function parseWhen(at: string | undefined, nowMs: number, timezone: string): { dueAt: number; cron: string | null } {
  if (at === undefined || at.trim() === "" || at.trim().toLowerCase() === "now") return { dueAt: nowMs, cron: null };
  const value = at.trim();
  if (/\s/.test(value)) return { dueAt: nextCronTime(value, nowMs, timezone), cron: value.replace(/\s+/g, " ") };
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/i.test(value)) {
    throw new ScheduleError(`\`${value}\` is neither an ISO time (2030-01-31T09:00:00Z) nor a cron expression ("0 9 * * 1-5")`);
  }
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/i.test(value) || !value.includes(":") ? value : `${value}Z`;
  const ms = Date.parse(zoned);
  if (Number.isNaN(ms)) throw new ScheduleError(`\`${value}\` is not a valid time`);
  return { dueAt: ms, cron: null };
}

/** A due time as people read it in a chat: UTC, to the second. */
export const formatTime = (ms: number): string => new Date(ms).toISOString().replace("T", " ").replace(/\.\d{3}Z$/, " UTC");
