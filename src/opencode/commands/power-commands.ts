import type { Command } from "@opencode-ai/sdk/v2";
import { slashCommand } from "../../commands/parse.ts";
import { UsageError, type CommandContext, type CommandSpec } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { titleFrom } from "../../commands/backend.ts";
import { describeError } from "../errors.ts";
import type { QueuedPrompt } from "../prompt-queue.ts";
import { threadLink } from "../../matrix/format.ts";

const cut = (text: string, max: number): string => {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

const describeQueued = (q: QueuedPrompt): string => cut(q.command ? `/${q.command.name} ${q.command.args}` : q.req.text, 100);

async function projectCommands(oc: OpencodeBackend, ctx: CommandContext): Promise<Command[]> {
  const directory = ctx.thread ? oc.threadDirectory(ctx.thread) : oc.roomDirectory(ctx.msg.roomId);
  const res = await oc.serverFor(ctx).conn.client.command.list({ directory });
  if (res.error !== undefined) throw new Error(describeError(res.error));
  return res.data ?? [];
}

export function powerCommands(oc: OpencodeBackend): CommandSpec[] {
  const p = oc.prefix;
  return [
    {
      name: "queue",
      args: "[<message> | clear]",
      summary: "queue a prompt for when the current turn ends (or end a message with ` . queue`); alone: list the queue; `clear` empties it",
      where: "any",
      async run(ctx) {
        const arg = ctx.args.trim();
        const t = ctx.thread;
        if (!t) {
          if (arg) throw new UsageError("Queue a prompt inside its session thread.");
          const rows = oc.servers.all.flatMap((u) => u.runner.queue.inRoom(ctx.msg.roomId)).sort((a, b) => a.id - b.id);
          if (rows.length === 0) {
            await ctx.reply("Nothing is queued in this room.");
            return;
          }
          const lines = rows.map((q, i) => `${i + 1}. ${describeQueued(q)} — [thread](${threadLink(q.roomId, q.rootEventId)})`);
          await ctx.reply(`**Queued prompts in this room** (${rows.length}):\n\n${lines.join("\n")}`);
          return;
        }
        const runner = oc.threadServer(t).runner;
        if (arg === "") {
          const rows = runner.queue.list(t.sessionId);
          const running = runner.isBusy(t.sessionId) ? "A turn is running." : "No turn is running.";
          if (rows.length === 0) {
            await ctx.reply(`Nothing is queued in this session. ${running}`);
            return;
          }
          await ctx.reply(`**Queued in this session** (${rows.length}) — ${running}\n\n${rows.map((q, i) => `${i + 1}. ${describeQueued(q)}`).join("\n")}`);
          return;
        }
        if (arg.toLowerCase() === "clear") {
          const n = runner.queue.clear(t.sessionId);
          await ctx.reply(n === 0 ? "Nothing was queued." : `🗑️ Removed ${n} queued prompt${n === 1 ? "" : "s"}.`);
          return;
        }
        const { queued } = await oc.followUp(t, { roomId: ctx.msg.roomId, eventId: ctx.msg.eventId, sender: ctx.msg.sender, text: arg }, { asPrompt: true });
        if (queued > 0) await ctx.services.sender.react(ctx.msg.roomId, ctx.msg.eventId, `🕐 ${queued}`);
      },
    },
    {
      name: "commands",
      summary: "OpenCode's own commands and skills for this project, with their descriptions",
      where: "any",
      async run(ctx) {
        const commands = await projectCommands(oc, ctx);
        if (commands.length === 0) {
          await ctx.reply("OpenCode offers no commands for this project.");
          return;
        }
        const kind = { command: "", mcp: " _(MCP)_", skill: " _(skill)_" } as const;
        const lines = commands.map((c) => `- \`${p} /${c.name}\`${kind[c.source ?? "command"]} — ${cut(c.description ?? "no description", 140)}`);
        await ctx.reply(`**OpenCode commands for this project** (${commands.length}):\n\n${lines.join("\n")}\n\nRun one with \`${p} /<name> [args]\`.`);
      },
    },
    {
      name: slashCommand,
      args: "[args]",
      summary: `run one of OpenCode's own commands or skills (\`${p} commands\` lists them); at the top level in a new session`,
      where: "any",
      async run(ctx) {
        const [, name = "", rest = ""] = /^(\S+)\s*([\s\S]*)$/.exec(ctx.args) ?? [];
        const commands = await projectCommands(oc, ctx);
        if (!commands.some((c) => c.name === name)) {
          await ctx.reply(`OpenCode has no command \`/${name}\` for this project. \`${p} commands\` lists the ${commands.length} it has.`);
          return;
        }
        const req = { roomId: ctx.msg.roomId, eventId: ctx.msg.eventId, sender: ctx.msg.sender, text: `/${name} ${rest}`.trim() };
        const thread = ctx.thread ?? (await oc.createSession(ctx.msg.roomId, ctx.root, ctx.msg.sender, titleFrom(req.text)));
        const { queued } = await oc.runCommand(thread, req, { name, args: rest.trim() });
        if (queued > 0) await ctx.services.sender.react(ctx.msg.roomId, ctx.msg.eventId, `🕐 ${queued}`);
      },
    },
    {
      name: "restart-server",
      summary: "restart the OpenCode server the bot started (the room's server), so that a changed opencode.json takes effect",
      where: "any",
      rights: "admin",
      async run(ctx) {
        const unit = oc.serverFor(ctx);
        const restart = unit.restartServer;
        if (!restart) {
          const name = oc.servers.several ? ` \`${unit.name}\`` : "";
          await ctx.reply(
            `The OpenCode server${name} at ${unit.conn.url} was not started by this bot, so the bot cannot restart it. ` +
              "Restart it where it runs; the bot reconnects by itself.",
          );
          return;
        }
        if (unit.runner.activeCount > 0) {
          const n = unit.runner.activeCount;
          await ctx.reply(`${n} turn${n === 1 ? " is" : "s are"} running; a restart would cut ${n === 1 ? "it" : "them"} off. Wait, or \`${p} abort\` in ${n === 1 ? "its" : "their"} thread, then try again.`);
          return;
        }
        const t0 = Date.now();
        const { oldPid, newPid, connected } = await restart();
        const took = ((Date.now() - t0) / 1000).toFixed(1);
        await ctx.reply(
          connected
            ? `🔄 Restarted the OpenCode server (pid ${oldPid} → ${newPid}) in ${took} s and re-subscribed to its events; a changed \`opencode.json\` is in effect now.`
            : `🔄 Restarted the OpenCode server (pid ${oldPid} → ${newPid}), but it does not answer yet; the bot keeps trying to reconnect.`,
        );
      },
    },
  ];
}
