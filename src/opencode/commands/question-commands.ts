import { UsageError, type CommandSpec } from "../../commands/types.ts";
import type { ThreadRow } from "../../store/threads.ts";
import type { QuestionDesk } from "../question-desk.ts";

/** `answer <n or text>`: answers the question OpenCode's agent is waiting on in this thread (`deskOf`: its server's desk). */
export function questionCommands(deskOf: (thread: ThreadRow) => QuestionDesk): CommandSpec[] {
  return [
    {
      name: "answer",
      args: "<n or text>",
      summary: "answer the agent's pending question: an option's number, or your own words",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread!;
        const desk = deskOf(t);
        if (!desk.pendingIn(t.roomId, t.rootEventId)) {
          await ctx.reply("No question is waiting for an answer in this session.");
          return;
        }
        if (ctx.args.trim() === "") throw new UsageError("Write the answer after `answer`.");
        // Taken: the question message itself shows the answer and who gave it.
        const result = await desk.answerText(t.roomId, t.rootEventId, ctx.args, ctx.msg.sender);
        if (result.kind === "refused") await ctx.reply(result.why);
        else if (result.kind === "none") await ctx.reply("No question is waiting for an answer in this session.");
      },
    },
  ];
}
