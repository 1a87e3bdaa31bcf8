import { approvalCommands, type ApprovalReply } from "../commands/approvals.ts";
import type { CommandContext, CommandSpec } from "../commands/types.ts";
import type { AcpBackend } from "./backend.ts";

const code = (s: string): string => `\`${s.replace(/`/g, "'")}\``;

/** `abort`, `allow`, `deny`, `status`; `help` and prompts are the router's. */
export function acpCommands(acp: AcpBackend): CommandSpec[] {
  const answer = async (ctx: CommandContext, reply: ApprovalReply, reason?: string): Promise<void> => {
    const row = acp.permissions.pendingIn(ctx.thread as NonNullable<CommandContext["thread"]>);
    if (!row) {
      await ctx.reply("Nothing is waiting for permission in this session.");
      return;
    }
    await acp.permissions.answer(row, reply, ctx.msg.sender, reason);
  };

  return [
    {
      name: "abort",
      aliases: ["cancel"],
      summary: "stops the running turn (`session/cancel`); prompts waiting behind it are dropped",
      where: "thread",
      async run(ctx) {
        const { running, dropped } = await acp.abort(ctx.thread as NonNullable<CommandContext["thread"]>);
        const drop = dropped > 0 ? ` ${dropped} waiting ${dropped === 1 ? "prompt was" : "prompts were"} dropped.` : "";
        await ctx.reply(running ? `⏹️ Asked ${acp.name} to stop.${drop}` : `Nothing is running in this session.${drop}`);
      },
    },
    ...approvalCommands(answer, "rejects the pending permission request (ACP cannot pass the reason on; it is shown in the thread)"),
    {
      name: "status",
      summary: "shows the agent process and, in a thread, its session",
      where: "any",
      async run(ctx) {
        const h = acp.health();
        const p = acp.process;
        const state = p.running ? `✅ running${p.agentInfo ? ` (version ${p.agentInfo})` : ""}` : h.error ? `❌ ${String(h.error)}` : "not started yet (starts with the first prompt)";
        const lines = [`**${acp.name}** (ACP, ${code(acp.d.command)}) — ${state}`, `Works in ${code(acp.d.cwd)}; resumes sessions after a restart: ${p.running ? (p.loadSession ? "yes" : "no") : "unknown until it runs"}.`];
        if (ctx.thread) {
          const load = acp.load(ctx.thread);
          lines.push(`This thread: session ${code(ctx.thread.sessionId)}${load.busy ? `, answering now${load.queued ? `, ${load.queued} waiting` : ""}` : ", idle"}.`);
        }
        await ctx.reply(lines.join("\n"));
      },
    },
  ];
}
