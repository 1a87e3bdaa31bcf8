import { moderatorLevel } from "../../commands/router.ts";
import { UsageError, echo, type CommandSpec } from "../../commands/types.ts";
import { userPowerLevel } from "../../matrix/power.ts";
import type { OpencodeBackend } from "../backend.ts";
import { serverOfThread } from "../server-scope.ts";
import type { ServerUnit } from "../server-unit.ts";

const stateMark = (u: ServerUnit): string => (u.conn.state === "connected" ? "✅ connected" : u.conn.state === "connecting" ? "⏳ connecting" : "❌ not reachable");

/** One line about a server for `server`: name, address and state. */
function describeServer(u: ServerUnit): string {
  return `\`${u.name}\` (${u.conn.url}, ${stateMark(u)})`;
}

/**
 * `server [<name>]` and `servers`: which OpenCode server a room's new sessions start on, binding
 * a room to another (room moderators; existing threads stay on their server), and every
 * server's health, version, sessions and turns.
 */
export function serverCommands(oc: OpencodeBackend): CommandSpec[] {
  const p = oc.prefix;
  const servers = oc.servers;
  return [
    {
      name: "server",
      args: "[<name>]",
      summary: "the OpenCode server this room's new sessions start on; with a name (room moderators), bind the room to that server — existing threads stay where they are",
      where: "any",
      async run(ctx) {
        const name = ctx.args.trim();
        const roomId = ctx.msg.roomId;
        const current = servers.roomServerName(roomId);
        const currentUnit = servers.get(current);
        if (name === "") {
          const how = servers.roomIsBound(roomId) ? `bound with \`${p} server\`` : "the rooms' default";
          const room = `New sessions in this room start on the OpenCode server ${currentUnit ? describeServer(currentUnit) : `\`${current}\` (not configured any more)`} — ${how}.`;
          const thread = ctx.thread ? `This thread's session is on \`${serverOfThread(ctx.thread)}\`.\n` : "";
          const others = servers.several ? `\nServers: ${servers.list()}. \`${p} servers\` shows their health; \`${p} server <name>\` (room moderators) moves the room's new sessions.` : "";
          await ctx.reply(`${thread}${room}${others}`);
          return;
        }
        if (ctx.thread) throw new UsageError("Bind the room at its top level, not inside a thread.");
        const unit = servers.get(name);
        if (!unit) throw new UsageError(`There is no OpenCode server ${echo(name)}; the servers are ${servers.list()}.`);
        if ((await userPowerLevel(ctx.services.client, roomId, ctx.msg.sender)) < moderatorLevel) {
          await ctx.reply(`Binding the room to an OpenCode server needs room moderator rights (power level ≥ ${moderatorLevel}).`);
          return;
        }
        if (name === current && servers.roomIsBound(roomId)) {
          await ctx.reply(`This room is already on the OpenCode server ${describeServer(unit)}.`);
          return;
        }
        servers.bind(roomId, name);
        // A project directory is a path on the old server's machine: the room starts again from the new server's workspace.
        const project = ctx.services.rooms.settings(roomId).workspaceDir;
        if (name !== current && project !== null) ctx.services.rooms.set(roomId, "workspaceDir", null);
        const kept = ctx.services.threads.inRoom(roomId).filter((t) => t.backend === "opencode" && serverOfThread(t) !== name).length;
        await ctx.reply(
          [
            `🔀 New sessions in this room now start on the OpenCode server ${describeServer(unit)}.`,
            ...(kept > 0 ? [`The room's ${kept} existing thread${kept === 1 ? " stays" : "s stay"} on ${kept === 1 ? "its" : "their"} server.`] : []),
            ...(name !== current && project !== null ? [`The project is now that server's workspace \`${unit.spec.workspaceDir}\` (\`${p} project\` picks another).`] : []),
            ...(unit.conn.state !== "connected" ? [`⚠️ That server does not answer now${unit.conn.lastError ? ` (${unit.conn.lastError})` : ""}; prompts here fail until it is back.`] : []),
          ].join("\n"),
        );
      },
    },
    {
      name: "servers",
      summary: "every OpenCode server: health, version, sessions, turns running, and which one this room uses",
      where: "any",
      async run(ctx) {
        const rows = oc.d.db.prepare("SELECT COALESCE(server, 'default') AS server, COUNT(*) AS n FROM threads WHERE backend = 'opencode' GROUP BY 1").all() as Array<{ server: string; n: number }>;
        const sessions = new Map(rows.map((r) => [r.server, r.n]));
        const here = servers.roomServerName(ctx.msg.roomId);
        const lines = servers.all.map((u) => {
          const marks = [...(u.name === here ? ["this room"] : []), ...(u === servers.roomDefault && servers.several ? ["rooms' default"] : [])];
          const n = sessions.get(u.name) ?? 0;
          const why = u.conn.state === "connected" ? "" : ` — ${u.problem ?? u.conn.lastError ?? "no answer yet"}`;
          return (
            `- **${u.name}**${marks.length ? ` (${marks.join(", ")})` : ""} — ${stateMark(u)}${why}\n` +
            `  ${u.conn.url} · version ${u.version ?? "?"} · ${n} session${n === 1 ? "" : "s"} · ${u.runner.activeCount} turn${u.runner.activeCount === 1 ? "" : "s"} running · ${u.conn.reconnects} reconnect${u.conn.reconnects === 1 ? "" : "s"}`
          );
        });
        await ctx.reply(`**OpenCode servers** (${servers.all.length}):\n\n${lines.join("\n")}`);
      },
    },
  ];
}
