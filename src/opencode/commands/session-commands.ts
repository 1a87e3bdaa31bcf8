import type { Session } from "@opencode-ai/sdk/v2";
import type { CommandContext, CommandSpec } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { threadLink } from "../../matrix/format.ts";
import { titleFrom } from "../../commands/backend.ts";
import { serverOfThread } from "../server-scope.ts";
import type { ServerUnit } from "../server-unit.ts";
import { attachCommand } from "./attach-command.ts";

const ago = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
};


async function getSession(unit: ServerUnit, id: string, directory: string): Promise<Session | undefined> {
  const res = await unit.conn.client.session.get({ sessionID: id, directory });
  return res.data ?? undefined;
}

/** The room's server in `status`: its state (and, with several servers, its name). */
function serverLine(oc: OpencodeBackend, roomId: string): string {
  if (!oc.servers.several) return `OpenCode server: ${oc.servers.primary.conn.state}`;
  const name = oc.servers.roomServerName(roomId);
  const unit = oc.servers.get(name);
  return `OpenCode server: \`${name}\` · ${unit ? unit.conn.state : "not configured"}`;
}

export function sessionCommands(oc: OpencodeBackend): CommandSpec[] {
  const p = oc.prefix;
  return [
    {
      name: "new",
      args: "[title]",
      summary: "start an empty session; the bot posts its thread",
      where: "room",
      async run(ctx: CommandContext) {
        const title = ctx.args ? titleFrom(ctx.args) : "New session";
        const unit = oc.roomServer(ctx.msg.roomId);
        const id = await oc.newSession(unit, title, oc.roomDirectory(ctx.msg.roomId));
        const on = oc.servers.several ? ` on \`${unit.name}\`` : "";
        await oc.openThread(ctx.msg.roomId, id, title, ctx.msg.sender, `🧵 **${title}** — new OpenCode session \`${id}\`${on}. Write in this thread to talk to it.`, {}, unit);
      },
    },
    {
      name: "sessions",
      summary: "this room's sessions: title, id, state, last activity, thread link",
      where: "any",
      async run(ctx) {
        const threads = ctx.services.threads.inRoom(ctx.msg.roomId).filter((t) => t.backend === "opencode");
        if (threads.length === 0) {
          await ctx.reply(`No OpenCode sessions in this room yet. Start one with \`${p} <prompt>\` or \`${p} new\`.`);
          return;
        }
        // Each thread's state from its own server (a room's threads may be on several after it moved).
        const statuses = new Map<string, Record<string, { type: string }>>();
        for (const name of new Set(threads.map((t) => serverOfThread(t)))) {
          const unit = oc.servers.get(name);
          statuses.set(name, (unit && (await unit.conn.client.session.status().catch(() => ({ data: undefined }))).data) ?? {});
        }
        const lines = threads.slice(0, 30).map((t, i) => {
          const unit = oc.servers.get(serverOfThread(t));
          const state = !unit ? "server gone" : unit.runner.isBusy(t.sessionId) ? "busy" : unit.conn.state !== "connected" ? "server away" : (statuses.get(unit.name)?.[t.sessionId]?.type ?? "idle");
          const on = oc.servers.several ? ` · on \`${serverOfThread(t)}\`` : "";
          return `${i + 1}. **${t.title ?? "untitled"}** — \`${t.sessionId}\` · ${state}${on} · ${ago(Date.now() - t.lastActivityAt)} · [thread](${threadLink(t.roomId, t.rootEventId)})`;
        });
        const more = threads.length > 30 ? `\n…and ${threads.length - 30} more.` : "";
        await ctx.reply(`**Sessions in this room** (${threads.length}):\n\n${lines.join("\n")}${more}`);
      },
    },
    attachCommand(oc),
    {
      name: "abort",
      summary: "stop the turn that is running (queued prompts are dropped)",
      where: "thread",
      async run(ctx) {
        const thread = ctx.thread!;
        const wasRunning = await oc.threadServer(thread).runner.abort(thread);
        await ctx.reply(wasRunning ? "⏹️ Aborting…" : "Nothing is running in this session.");
      },
    },
    {
      name: "status",
      summary: "state, model, agent, tokens, cost and changed files of the session (at top level: the room's settings)",
      where: "any",
      async run(ctx) {
        if (!ctx.thread) {
          const room = ctx.services.rooms.settings(ctx.msg.roomId);
          const count = ctx.services.threads.inRoom(ctx.msg.roomId).filter((t) => t.backend === "opencode").length;
          await ctx.reply(
            [
              `**This room** — ${count} OpenCode session${count === 1 ? "" : "s"}`,
              `Project: \`${oc.roomDirectory(ctx.msg.roomId)}\``,
              `Default model: ${room.defaultModel ?? "server default"} · default agent: ${room.defaultAgent ?? "server default"}`,
              serverLine(oc, ctx.msg.roomId),
            ].join("\n"),
          );
          return;
        }
        const t = ctx.thread;
        const dir = oc.threadDirectory(t);
        const unit = oc.threadServer(t);
        const session = await getSession(unit, t.sessionId, dir);
        if (!session) {
          await ctx.reply(`Session \`${t.sessionId}\` is gone from the OpenCode server. \`${p} forget\` unmaps this thread.`);
          return;
        }
        const state = unit.runner.isBusy(t.sessionId) ? "busy" : ((await unit.conn.client.session.status()).data?.[t.sessionId]?.type ?? "idle");
        const model = t.model ?? (session.model ? `${session.model.providerID}/${session.model.id}` : "server default");
        const tok = session.tokens ? session.tokens.input + session.tokens.output + session.tokens.reasoning : 0;
        const diff = (await unit.conn.client.session.diff({ sessionID: t.sessionId, directory: dir })).data ?? [];
        const files = diff.map((f) => f.file).filter((f): f is string => !!f);
        const queued = unit.runner.queueLength(t.sessionId);
        const last = unit.runner.lastTurn(t.roomId, t.rootEventId);
        const outcome = { running: "🔄 running", done: "✅ done", failed: "⚠️ failed", aborted: "⏹️ aborted" };
        await ctx.reply(
          [
            `**${session.title}** — \`${t.sessionId}\`${oc.servers.several ? ` on the OpenCode server \`${unit.name}\`` : ""}`,
            `State: ${state}${queued ? ` (${queued} queued)` : ""} · model: ${model} · agent: ${t.agent ?? session.agent ?? "build"}`,
            ...(last ? [`Last turn: ${outcome[last.status]}${last.durationMs !== null ? ` after ${Math.round(last.durationMs / 1000)} s` : ""}`] : []),
            `Tokens: ${tok.toLocaleString("en-US")} · cost: $${(session.cost ?? 0).toFixed(4)}`,
            `Changed files: ${files.length ? files.map((f) => `\`${f}\``).join(", ") : "none"}`,
          ].join("\n"),
        );
      },
    },
    {
      name: "forget",
      summary: "unmap this thread from its session (the session stays on the server)",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread!;
        ctx.services.threads.delete(t.roomId, t.rootEventId);
        await ctx.reply(`This thread is no longer linked to \`${t.sessionId}\`. The session still exists; \`${p} attach ${t.sessionId}\` links it again.`);
      },
    },
  ];
}
