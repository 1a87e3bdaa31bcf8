import { UsageError, type CommandSpec } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { describeError } from "../errors.ts";
import { WorktreeStore, mergeWorktree } from "../worktrees.ts";

const list = (xs: string[]): string => xs.slice(0, 20).map((x) => `\`${x}\``).join(", ") + (xs.length > 20 ? `, … (${xs.length} in all)` : "");

export function worktreeCommands(oc: OpencodeBackend): CommandSpec[] {
  const p = oc.prefix;
  const store = new WorktreeStore(oc.d.db);
  return [
    {
      name: "worktree",
      args: "<name>",
      summary: "create a git worktree of the room's project and start a session in it, in a new thread marked with the branch",
      where: "room",
      async run(ctx) {
        const name = ctx.args.trim();
        if (!/^[A-Za-z0-9][\w.-]{0,40}$/.test(name) || name.includes("..")) {
          throw new UsageError(name ? `\`${name.slice(0, 60)}\` cannot be a branch name here (letters, digits, \`.\`, \`_\`, \`-\`).` : "Which name?");
        }
        const projectDir = oc.roomDirectory(ctx.msg.roomId);
        const unit = oc.roomServer(ctx.msg.roomId);
        const created = await unit.conn.client.worktree.create({ directory: projectDir, worktreeCreateInput: { name } });
        if (!created.data) {
          await ctx.reply(`⚠️ Could not create a worktree of \`${projectDir}\`: ${describeError(created.error)}. The room's project must be a git repository with at least one commit.`);
          return;
        }
        const wt = created.data;
        const branch = wt.branch ?? `opencode/${wt.name}`;
        const title = `🌿 ${branch}`;
        const sessionId = await oc.newSession(unit, title, wt.directory);
        const thread = await oc.openThread(
          ctx.msg.roomId,
          sessionId,
          title,
          ctx.msg.sender,
          `🌿 **${branch}** — new git worktree \`${wt.directory}\` of \`${projectDir}\`, session \`${sessionId}\`. ` +
            `Write in this thread to work on the branch; \`${p} merge\` here merges it into the default branch.`,
          { directory: wt.directory },
          unit,
        );
        store.insert({ roomId: thread.roomId, rootEventId: thread.rootEventId, name: wt.name, branch, directory: wt.directory, projectDir, createdBy: ctx.msg.sender });
      },
    },
    {
      name: "merge",
      summary: "merge this worktree thread's branch into the project's default branch (conflicts are reported, nothing half-merged)",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread!;
        const w = store.get(t.roomId, t.rootEventId);
        if (!w) {
          await ctx.reply(`This thread's session does not work in a worktree. \`${p} worktree <name>\` at the top level starts one.`);
          return;
        }
        if (oc.threadServer(t).runner.isBusy(t.sessionId)) {
          await ctx.reply(`A turn is running on \`${w.branch}\`. Wait for it to end, or \`${p} abort\`, then merge.`);
          return;
        }
        const result = await mergeWorktree(w, `${t.title ?? w.name} (from Matrix)`);
        switch (result.kind) {
          case "merged": {
            store.markMerged(t.roomId, t.rootEventId);
            const files = result.files.map((f) => f.replace(/\t/g, " ")).map((f) => `\`${f}\``);
            await ctx.reply(
              `✅ Merged \`${w.branch}\` into \`${result.into}\` (merge commit \`${result.commit}\`)` +
                `${result.committed ? "; the session's uncommitted changes were committed on the branch first" : ""}. ` +
                `${files.length} file${files.length === 1 ? "" : "s"} changed: ${files.slice(0, 20).join(", ")}.`,
            );
            return;
          }
          case "nothing":
            await ctx.reply(`Nothing to merge: \`${w.branch}\` has no changes that \`${result.into}\` lacks.`);
            return;
          case "conflict":
            await ctx.reply(
              `⚠️ **Merge conflict.** \`${w.branch}\` and \`${result.into}\` both changed ${list(result.files)}. ` +
                `Nothing was merged: \`${result.into}\` is as it was. Ask the agent here to merge \`${result.into}\` into the branch ` +
                `and resolve the conflicts, then \`${p} merge\` again.`,
            );
            return;
          case "refused":
            await ctx.reply(`⚠️ Could not merge \`${w.branch}\`${result.into ? ` into \`${result.into}\`` : ""}: ${result.reason}. Nothing was merged.`);
            return;
        }
      },
    },
  ];
}
