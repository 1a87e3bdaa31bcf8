import { existsSync, realpathSync, statSync } from "node:fs";
import { posix, resolve, sep } from "node:path";
import { UsageError, type CommandSpec, echo } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { parseModel } from "../backend.ts";
import type { ServerUnit } from "../server-unit.ts";

async function knownModels(unit: ServerUnit, directory: string): Promise<string[] | undefined> {
  const res = await unit.conn.client.config.providers({ directory }).catch(() => undefined);
  const providers = res?.data?.providers;
  if (!providers) return undefined;
  return providers.flatMap((p) => Object.keys(p.models ?? {}).map((m) => `${p.id}/${m}`));
}

async function knownAgents(unit: ServerUnit, directory: string): Promise<string[] | undefined> {
  const res = await unit.conn.client.app.agents({ directory }).catch(() => undefined);
  return res?.data?.map((a) => a.name);
}

const list = (xs: string[]): string => xs.slice(0, 15).map((x) => `\`${x}\``).join(", ") + (xs.length > 15 ? ", …" : "");

type Project = { kind: "ok"; dir: string } | { kind: "missing" } | { kind: "outside"; roots: string[] };

function localProject(projectRoots: string[], typed: string): Project {
  const roots = projectRoots.filter((r) => existsSync(r)).map((r) => realpathSync(r));
  const candidate = resolve(roots[0] ?? ".", typed);
  const real = existsSync(candidate) ? realpathSync(candidate) : undefined;
  if (!real || !statSync(real).isDirectory()) return { kind: "missing" };
  if (!roots.some((r) => real === r || real.startsWith(r + sep))) return { kind: "outside", roots };
  return { kind: "ok", dir: real };
}

async function remoteProject(unit: ServerUnit, typed: string): Promise<Project> {
  const roots = unit.spec.projectRoots.map((r) => posix.resolve(r));
  const dir = posix.resolve(roots[0] ?? "/", typed);
  const root = roots.find((r) => dir === r || dir.startsWith(r === "/" ? r : r + "/"));
  if (root === undefined) return { kind: "outside", roots };
  if (unit.conn.state !== "connected") throw new Error(`the OpenCode server \`${unit.name}\` is not reachable now, so it cannot say whether \`${dir}\` is there`);
  // OpenCode lists a directory inside its project; a path that is not a directory there is an error.
  const res = await unit.conn.client.file.list({ directory: root, path: posix.relative(root, dir) || "." }).catch(() => undefined);
  return res?.data && res.error === undefined ? { kind: "ok", dir } : { kind: "missing" };
}

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
        const models = await knownModels(oc.serverFor(ctx), dir);
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
        const agents = await knownAgents(oc.serverFor(ctx), dir);
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
        const unit = oc.roomServer(ctx.msg.roomId);
        // The server `default` shares the bot's files: symlinks are followed there. Another
        // machine's directories are checked by name, and by asking that server whether it is there.
        const found = unit.spec.primary ? localProject(unit.spec.projectRoots, typed) : await remoteProject(unit, typed);
        if (found.kind === "missing") {
          await ctx.reply(`No directory ${echo(typed)}${oc.servers.several ? ` on the OpenCode server \`${unit.name}\`` : ""}.`);
          return;
        }
        if (found.kind === "outside") {
          await ctx.reply(`⛔ ${echo(typed)} is outside the allowed project roots (${list(found.roots)}).`);
          return;
        }
        ctx.services.rooms.set(ctx.msg.roomId, "workspaceDir", found.dir);
        await ctx.reply(`New sessions in this room work in \`${found.dir}\`${oc.servers.several ? ` on the OpenCode server \`${unit.name}\`` : ""}.`);
      },
    },
  ];
}
