// Named points where the bot can be made to die hard, for the crash-point tests: with
// BOT_TEST_CRASH_AT=<point> the process SIGKILLs itself the first time it passes <point>;
// with <point>@<n>, the n-th time (e.g. the second thread's row, when the first thread's turn
// runs and prompts wait behind it). Unset (always, outside tests) this is one comparison.
//
// OpenCode and Letta turns pass the same points, each where its own turn is at that stage:
// thread-row   the thread is recorded (Letta: with its turn and its place in the agent's queue)
// turn-row     the turn is recorded and about to be sent (Letta: taken out of the queue to be sent)
// sent-mark    Letta only: the turn is marked as sent, the message not yet on its way
// prompt-sent  the agent has the prompt (Letta: it accepted the message and began to answer)
// first-edit   the live reply's first edit went out; continuation: a long answer's next piece was posted
// final-edit   the final text went out, the turn is not recorded as ended yet

export type CrashPoint = "thread-row" | "turn-row" | "sent-mark" | "prompt-sent" | "first-edit" | "final-edit" | "continuation";

const [armed, nth] = (process.env.BOT_TEST_CRASH_AT ?? "").split("@");
let passes = 0;

export function crashPoint(point: CrashPoint): void {
  if (armed === point && ++passes >= Number(nth ?? 1)) process.kill(process.pid, "SIGKILL");
}
