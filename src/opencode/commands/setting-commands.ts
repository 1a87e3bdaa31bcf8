import { existsSync, realpathSync, statSync } from "node:fs";
import { resolve, sep } from "node:path";
import { UsageError, type CommandSpec, echo } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { parseModel } from "../backend.ts";

async function knownModels(oc: OpencodeBackend, directory: string): Promise<string[] | undefined> {
  const res = await oc.conn.client.config.providers({ directory }).catch(() => undefined);
  const providers = res?.data?.providers;
  if (!providers) return undefined;
  return providers.flatMap((p) => Object.keys(p.models ?? {}).map((m) => `${p.id}/${m}`));
}

async function knownAgents(oc: OpencodeBackend, directory: string): Promise<string[] | undefined> {
  const res = await oc.conn.client.app.agents({ directory }).catch(() => undefined);
  return res?.data?.map((a) => a.name);
}

const list = (xs: string[]): string => xs.slice(0, 15).map((x) => `\`${x}\``).join(", ") + (xs.length > 15 ? ", …" : "");

export function settingCommands(oc: OpencodeBackend): CommandSpec[] {
  return [
    {
      name: "model",
      args: "<provider/model>",
      summary: "the model for this thread, or the room's default at top level",
      where: "any",
      async run(ctx) {
        const spec = ctx.args.trim();
        if (!parseModel(spec)) throw new UsageError(spec ? `\`${spec.slice(0, 80)}\` is not of the form provider/model.` : "Which model?");
        const dir = ctx.thread ? oc.threadDirectory(ctx.thread) : oc.roomDirectory(ctx.msg.roomId);
        const models = await knownModels(oc, dir);
        if (models && !models.includes(spec)) {
          await ctx.reply(`Unknown model ${echo(spec)}. Available: ${list(models)}.`);
          return;
        }
        if (ctx.thread) ctx.services.threads.setSetting(ctx.thread.roomId, ctx.thread.rootEventId, "model", spec);
        else ctx.services.rooms.set(ctx.msg.roomId, "defaultModel", spec);
        await ctx.reply(ctx.thread ? `Model for this thread: \`${spec}\`.` : `Default model for new prompts in this room: \`${spec}\`.`);
      },
    },
    {
      name: "agent",
      args: "<name>",
      summary: "the OpenCode agent for this thread, or the room's default at top level",
      where: "any",
      async run(ctx) {
        const name = ctx.args.trim();
        if (!/^[\w.-]{1,64}$/.test(name)) throw new UsageError(name ? `\`${name.slice(0, 80)}\` is not an agent name.` : "Which agent?");
        const dir = ctx.thread ? oc.threadDirectory(ctx.thread) : oc.roomDirectory(ctx.msg.roomId);
        const agents = await knownAgents(oc, dir);
        if (agents && !agents.includes(name)) {
          await ctx.reply(`Unknown agent ${echo(name)}. Available: ${list(agents)}.`);
          return;
        }
        if (ctx.thread) ctx.services.threads.setSetting(ctx.thread.roomId, ctx.thread.rootEventId, "agent", name);
        else ctx.services.rooms.set(ctx.msg.roomId, "defaultAgent", name);
        await ctx.reply(ctx.thread ? `Agent for this thread: \`${name}\`.` : `Default agent for new prompts in this room: \`${name}\`.`);
      },
    },
    {
      name: "project",
      args: "<directory>",
      summary: "the room's project directory for new sessions",
      where: "room",
      rights: "moderator",
      async run(ctx) {
        const typed = ctx.args.trim();
        if (!typed) throw new UsageError("Which directory?");
        const roots = oc.d.projectRoots.filter((r) => existsSync(r)).map((r) => realpathSync(r));
        const candidate = resolve(roots[0] ?? ".", typed);
        const real = existsSync(candidate) ? realpathSync(candidate) : undefined;
        if (!real || !statSync(real).isDirectory()) {
          await ctx.reply(`No directory ${echo(typed)}.`);
          return;
        }
        if (!roots.some((r) => real === r || real.startsWith(r + sep))) {
          await ctx.reply(`⛔ ${echo(typed)} is outside the allowed project roots (${list(roots)}).`);
          return;
        }
        ctx.services.rooms.set(ctx.msg.roomId, "workspaceDir", real);
        await ctx.reply(`New sessions in this room work in \`${real}\`.`);
      },
    },
  ];
}
