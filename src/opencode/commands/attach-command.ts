import { UsageError, type CommandContext, type CommandSpec, echo } from "../../commands/types.ts";
import { threadMessage } from "../../matrix/content.ts";
import { threadLink } from "../../matrix/format.ts";
import type { ThreadRow } from "../../store/threads.ts";
import type { OpencodeBackend } from "../backend.ts";
import type { ServerUnit } from "../server-unit.ts";

/**
 * `!oc attach <session-id> [move]`: a session without a thread (one started in the TUI, or a
 * forgotten one) gets a thread here. A session whose thread is in another room stays there:
 * its history is that room's. Only an operator may move it, explicitly, with `move`.
 */
export function attachCommand(oc: OpencodeBackend): CommandSpec {
  const p = oc.prefix;
  return {
    name: "attach",
    args: "<session-id> [move]",
    summary: "map an existing session (e.g. one started in the TUI) to a new thread and stream it there; `move` (operators) takes it from another room",
    where: "room",
    async run(ctx) {
      const [id = "", word, ...extra] = ctx.args.trim().split(/\s+/);
      if (!/^ses_[A-Za-z0-9]+$/.test(id)) throw new UsageError(ctx.args ? `\`${ctx.args.slice(0, 80)}\` is not a session id (they look like \`ses_…\`).` : "Which session?");
      if ((word !== undefined && word.toLowerCase() !== "move") || extra.length > 0) throw new UsageError(`After the session id, only \`move\` may follow.`);
      const move = word !== undefined;
      // Session ids are per server: the session is looked for on the room's server, and only its threads of that server are its.
      const unit = oc.roomServer(ctx.msg.roomId);
      const mapped = unit.threads.bySession("opencode", id);
      const existing = mapped.find((t) => t.roomId === ctx.msg.roomId);
      if (existing) {
        await ctx.reply(`Session \`${id}\` already has [a thread here](${threadLink(existing.roomId, existing.rootEventId)}).`);
        return;
      }
      const elsewhere = mapped.filter((t) => t.roomId !== ctx.msg.roomId);
      if (move && !ctx.senderIsAdmin) {
        await ctx.reply(`\`${p} attach <session-id> move\` is for the bot's operators (access.admins).`);
        return;
      }
      if (elsewhere.length > 0 && !move) {
        await ctx.reply(
          `⛔ Session \`${id}\` belongs to a thread in another room, so it cannot be attached here. ` +
            `The bot's operators (access.admins) can move it with \`${p} attach ${id} move\`.`,
        );
        return;
      }
      if (elsewhere.length > 0 && !(await idleEverywhere(unit, ctx, id, elsewhere))) return;
      // A moved session keeps the directory it works in; a new mapping gets the room's project.
      const from = elsewhere[0];
      const directory = from?.directory ?? oc.roomDirectory(ctx.msg.roomId);
      const session = (await unit.conn.client.session.get({ sessionID: id, directory })).data ?? undefined;
      if (!session) {
        const which = oc.servers.several ? ` \`${unit.name}\` (this room's; \`${p} server\` shows it)` : "";
        await ctx.reply(`There is no session ${echo(id)} on the OpenCode server${which}. \`${p} sessions\` lists this room's sessions.`);
        return;
      }
      for (const old of elsewhere) await release(ctx, old);
      const headline = from
        ? `📎 **${session.title}** — OpenCode session \`${id}\`, moved here from another room by an operator. Its work streams here; write in this thread to prompt it.`
        : `📎 **${session.title}** — attached OpenCode session \`${id}\`. Its work streams here; write in this thread to prompt it.`;
      const settings = from ? { directory, model: from.model, agent: from.agent } : {};
      const thread = await oc.openThread(ctx.msg.roomId, id, session.title, ctx.msg.sender, headline, settings, unit);
      const status = (await unit.conn.client.session.status()).data?.[id];
      if (status?.type === "busy") unit.runner.follow(thread);
    },
  };
}

/** A session is moved only while nothing of it is in flight in its old room: no turn, queue or pending question. */
async function idleEverywhere(unit: ServerUnit, ctx: CommandContext, id: string, threads: ThreadRow[]): Promise<boolean> {
  const pending = threads.some((t) => unit.permissions.pendingIn(t.roomId, t.rootEventId) !== undefined);
  if (!unit.runner.isBusy(id) && unit.runner.queueLength(id) === 0 && !pending) return true;
  await ctx.reply(`Session \`${id}\` is working in its room (a turn, queued prompts or a permission request). Move it when it is idle.`);
  return false;
}

/** Unmaps the old thread and says so there, so nobody in that room writes into the void. */
async function release(ctx: CommandContext, old: ThreadRow): Promise<void> {
  ctx.services.threads.delete(old.roomId, old.rootEventId);
  const note = `📦 An operator moved this session to another room; messages in this thread no longer reach it.`;
  await ctx.services.sender
    .send(old.roomId, threadMessage({ roomId: old.roomId, threadRoot: old.rootEventId, replyTo: old.rootEventId }, note, { notice: true }))
    .catch((err: unknown) => ctx.services.log.warn({ err, roomId: old.roomId }, "could not tell the old room that its session moved"));
}
