import { approvalCommands } from "../../commands/approvals.ts";
import type { CommandContext, CommandSpec } from "../../commands/types.ts";
import type { ThreadRow } from "../../store/threads.ts";
import type { PermissionDesk } from "../permission-desk.ts";

/** `deskOf`: the permission desk of the thread's server. */
export function permissionCommands(deskOf: (thread: ThreadRow) => PermissionDesk): CommandSpec[] {
  return approvalCommands(async (ctx: CommandContext, reply, reason) => {
    const t = ctx.thread!;
    const desk = deskOf(t);
    const row = desk.pendingIn(t.roomId, t.rootEventId);
    if (!row) {
      await ctx.reply("Nothing is waiting for permission in this session.");
      return;
    }
    await desk.answer(row, reply, ctx.msg.sender, reason);
  }, "reject the pending permission request, optionally telling the agent why");
}
