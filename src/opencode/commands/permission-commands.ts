import { UsageError, type CommandContext, type CommandSpec } from "../../commands/types.ts";
import type { PermissionDesk } from "../permission-desk.ts";

export function permissionCommands(desk: PermissionDesk): CommandSpec[] {
  const answer = async (ctx: CommandContext, reply: "once" | "always" | "reject", reason?: string): Promise<void> => {
    const t = ctx.thread!;
    const row = desk.pendingIn(t.roomId, t.rootEventId);
    if (!row) {
      await ctx.reply("Nothing is waiting for permission in this session.");
      return;
    }
    await desk.answer(row, reply, ctx.msg.sender, reason);
  };
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
      summary: "reject the pending permission request, optionally telling the agent why",
      where: "thread",
      async run(ctx) {
        await answer(ctx, "reject", ctx.args.trim() || undefined);
      },
    },
  ];
}
