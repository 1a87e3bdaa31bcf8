import { UsageError, type CommandContext, type CommandSpec } from "./types.ts";

/** How a person answers an agent's request to use a tool: once, always, or not. */
export type ApprovalReply = "once" | "always" | "reject";

/**
 * `allow [always]` and `deny [reason]` in a session thread, for every backend whose agent asks
 * before it acts: `answer` gives the reply to the backend's pending request of the thread.
 */
export function approvalCommands(answer: (ctx: CommandContext, reply: ApprovalReply, reason?: string) => Promise<void>, denySummary: string): CommandSpec[] {
  return [
    {
      name: "allow",
      args: "[always]",
      summary: "allow the pending permission request once, or always",
      where: "thread",
      async run(ctx) {
        const arg = ctx.args.trim().toLowerCase();
        if (arg !== "" && arg !== "always" && arg !== "once") throw new UsageError(`\`${ctx.args.slice(0, 40)}\` is not \`always\`.`);
        await answer(ctx, arg === "always" ? "always" : "once");
      },
    },
    {
      name: "deny",
      aliases: ["reject"],
      args: "[reason]",
      summary: denySummary,
      where: "thread",
      async run(ctx) {
        await answer(ctx, "reject", ctx.args.trim() || undefined);
      },
    },
  ];
}
