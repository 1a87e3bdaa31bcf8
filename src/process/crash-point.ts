// Named points where the bot can be made to die hard, for the crash-point tests: with
// BOT_TEST_CRASH_AT=<point> the process SIGKILLs itself the first time it passes <point>.
// Unset (always, outside tests) this is one comparison.

export type CrashPoint = "thread-row" | "turn-row" | "prompt-sent" | "first-edit" | "final-edit" | "continuation";

const armed = process.env.BOT_TEST_CRASH_AT;

export function crashPoint(point: CrashPoint): void {
  if (armed === point) process.kill(process.pid, "SIGKILL");
}
