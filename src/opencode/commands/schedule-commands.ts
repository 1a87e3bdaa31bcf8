import { UsageError, type CommandSpec } from "../../commands/types.ts";
import { ScheduleStore, type ScheduledPrompt } from "../../schedule/store.ts";
import { formatTime } from "../../schedule/when.ts";
import type { OpencodeBackend } from "../backend.ts";
import { threadLink } from "../../matrix/format.ts";
import { userPowerLevel } from "../../matrix/power.ts";
import { moderatorLevel } from "../../commands/router.ts";

const cut = (text: string, max: number): string => {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

function describe(row: ScheduledPrompt): string {
  const when = row.status === "firing" ? "firing now" : row.status === "held" ? "being posted" : `next ${formatTime(row.dueAt)}`;
  const repeat = row.cron ? ` · cron \`${row.cron}\` (fired ${row.firedCount}×)` : "";
  const target = row.threadRoot ? `[thread](${threadLink(row.roomId, row.threadRoot)})` : row.sessionId ? `session \`${row.sessionId}\`` : "new thread";
  const kind = row.notifyOnly ? "🔔 notice" : "📨 prompt";
  const retry = row.attempts > 0 && row.lastError ? ` · retrying after: ${cut(row.lastError, 80)}` : "";
  return `**#${row.id}** ${kind} · ${when}${repeat} · ${target} · by ${row.createdBy}${retry}\n   ${cut(row.text, 100)}`;
}

export function scheduleCommands(oc: OpencodeBackend): CommandSpec[] {
  const store = new ScheduleStore(oc.d.db);
  return [
    {
      name: "schedule",
      args: "[rm <id>]",
      summary: "the room's scheduled prompts (made with the `send` CLI); `rm <id>` removes one",
      where: "any",
      async run(ctx) {
        const arg = ctx.args.trim();
        if (arg === "" || arg.toLowerCase() === "list") {
          const rows = store.active(ctx.msg.roomId);
          await ctx.reply(
            rows.length === 0
              ? "No prompts are scheduled in this room. The `send` CLI schedules them (`npm run send -- --room … --prompt … --at …`)."
              : `**Scheduled in this room** (${rows.length}):\n\n${rows.map(describe).join("\n")}`,
          );
          return;
        }
        const rm = /^(?:rm|remove|delete|cancel)\s+#?(\d{1,9})$/i.exec(arg);
        if (!rm) throw new UsageError(`\`${arg.slice(0, 60)}\` is not \`rm <id>\`.`);
        const id = Number(rm[1]);
        // Listing is for everyone allowed; removing changes what the room gets, like `project`.
        if ((await userPowerLevel(ctx.services.client, ctx.msg.roomId, ctx.msg.sender)) < moderatorLevel) {
          await ctx.reply(`Removing a scheduled prompt needs room moderator rights (power level ≥ ${moderatorLevel}).`);
          return;
        }
        const row = store.get(id);
        if (!row || !store.cancel(id, ctx.msg.roomId)) {
          await ctx.reply(`No scheduled prompt #${id} waits in this room. \`${oc.prefix} schedule\` lists them.`);
          return;
        }
        await ctx.reply(`🗑️ Removed scheduled prompt #${id}; ${row.cron ? `its schedule \`${row.cron}\` ends here` : "it will not fire"}.`);
      },
    },
  ];
}
