import type { Db } from "../store/db.ts";
import type { ThreadStore } from "../store/threads.ts";
import { threadLink } from "../matrix/format.ts";
import { TurnQueue } from "../turns/queue.ts";
import { verbosities, type BusyMode, type ConversationSettings, type Verbosity } from "../turns/settings.ts";
import { UsageError, echo, type CommandContext, type CommandSpec } from "./types.ts";

/** What the shared commands need, and nothing more. */
export interface SharedCommandDeps {
  settings: ConversationSettings;
  threads: ThreadStore;
  /** Read-only use of the durable turn queue (every backend's waiting prompts). */
  db: Db;
}

const ago = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 86400 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} d ago`;
};

/** The backend a shared command was written for (its prefix), from the router. */
const backendOf = (ctx: CommandContext): string => ctx.backend ?? "";

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
      name: "sessions",
      summary: "this room's threads of this backend: title, who started it, last activity, link",
      where: "any",
      async run(ctx) {
        const mine = d.threads.inRoom(ctx.msg.roomId).filter((t) => t.backend === backendOf(ctx));
        if (mine.length === 0) {
          await ctx.reply(`No ${ctx.services.prefix} threads in this room yet.`);
          return;
        }
        const lines = mine.map((t, i) => `${i + 1}. **${t.title ?? t.sessionId}** — by ${t.startedBy}, ${ago(Date.now() - t.lastActivityAt)} — [thread](${threadLink(t.roomId, t.rootEventId)})`);
        await ctx.reply(`**${ctx.services.prefix} threads in this room** (${mine.length}):\n\n${lines.join("\n")}`);
      },
    },
    {
      name: "queue",
      summary: "the prompts waiting for the running turn: in a thread, that thread's; at the top level, the room's",
      where: "any",
      async run(ctx) {
        if (ctx.args.trim()) throw new UsageError("This backend's queue can be listed, not written to: send the message in the thread (it waits its turn).");
        const q = new TurnQueue(d.db, backendOf(ctx));
        const rows = ctx.thread ? q.inThread(ctx.msg.roomId, ctx.thread.rootEventId) : q.inRoom(ctx.msg.roomId);
        const where = ctx.thread ? "this thread" : "this room";
        if (rows.length === 0) {
          await ctx.reply(`Nothing is waiting in ${where}.`);
          return;
        }
        const lines = rows.map((r, i) => `${i + 1}. ${echo(r.req.text, 80)} — ${r.req.sender}${ctx.thread ? "" : ` — [thread](${threadLink(r.roomId, r.rootEventId)})`}`);
        await ctx.reply(`**Waiting in ${where}** (${rows.length}):\n\n${lines.join("\n")}`);
      },
    },
    {
      name: "forget",
      summary: "unmap this thread: later messages in it go nowhere (the agent's session or memory stays)",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread as NonNullable<CommandContext["thread"]>;
        d.threads.delete(t.roomId, t.rootEventId);
        await ctx.reply(`This thread is no longer linked to \`${t.sessionId}\`; messages in it now reach no agent.`);
      },
    },
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
