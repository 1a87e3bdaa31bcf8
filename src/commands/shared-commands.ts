import { verbosities, type BusyMode, type ConversationSettings, type Verbosity } from "../turns/settings.ts";
import { UsageError, type CommandSpec } from "./types.ts";

/** What the shared commands need, and nothing more. */
export interface SharedCommandDeps {
  settings: ConversationSettings;
}

const described: Record<Verbosity, string> = {
  quiet: "the answer and its footer only",
  normal: "the answer with one compact line per tool call",
  verbose: "tool outputs and diffs too (cut to their last lines)",
};

/**
 * Commands every backend answers to under its own prefix (`!oc verbosity`, `!letta verbosity`,
 * `!gemini verbosity`): they act on the conversation, not on an agent.
 */
export function sharedCommands(d: SharedCommandDeps): CommandSpec[] {
  return [
    {
      name: "busy",
      args: "[queue|interrupt]",
      summary: "what a message sent while a turn runs does in this room: waits for the turn (queue, the default) or stops its running step and goes next (interrupt)",
      where: "room",
      rights: "moderator",
      async run(ctx) {
        const arg = ctx.args.trim().toLowerCase();
        const explain = (m: BusyMode): string =>
          m === "queue"
            ? `a message sent while a turn runs waits for it (\`${ctx.services.prefix} now <message>\` interrupts anyway)`
            : `a message sent while a turn runs stops its running step and goes next (end it with \` . queue\` to wait instead)`;
        if (arg === "") {
          const m = d.settings.busyMode(ctx.msg.roomId);
          await ctx.reply(`In this room **${m}**: ${explain(m)}.`);
          return;
        }
        if (arg !== "queue" && arg !== "interrupt") throw new UsageError(`\`${arg.slice(0, 40)}\` is neither queue nor interrupt`);
        d.settings.setBusyMode(ctx.msg.roomId, arg);
        await ctx.reply(`In this room **${arg}** from now on: ${explain(arg)}. OpenCode threads follow it; Letta and ACP agents always queue.`);
      },
    },
    {
      name: "verbosity",
      args: "[quiet|normal|verbose|default]",
      summary: "how much of the agent's work replies show, for this thread (in a thread) or the room's default (top level)",
      where: "any",
      async run(ctx) {
        const root = ctx.thread?.rootEventId;
        const where = root !== undefined ? "this thread" : "this room";
        const arg = ctx.args.trim().toLowerCase();
        if (arg === "") {
          const v = d.settings.verbosity(ctx.msg.roomId, root);
          const from = v.from === "thread" ? "set for this thread" : v.from === "room" ? "the room's setting" : "the default";
          await ctx.reply(`Verbosity in ${where}: **${v.value}** (${from}) — ${described[v.value]}.`);
          return;
        }
        if (arg === "default") {
          d.settings.setVerbosity(ctx.msg.roomId, root, null);
          const v = d.settings.verbosity(ctx.msg.roomId, root);
          await ctx.reply(`Verbosity in ${where} follows ${root !== undefined ? "the room" : "the default"} again: **${v.value}**.`);
          return;
        }
        if (!verbosities.includes(arg as Verbosity)) throw new UsageError(`\`${arg.slice(0, 40)}\` is not a verbosity`);
        d.settings.setVerbosity(ctx.msg.roomId, root, arg as Verbosity);
        await ctx.reply(`Verbosity in ${where}: **${arg}** — ${described[arg as Verbosity]}. It applies from the next turn on.`);
      },
    },
  ];
}
