import type { Message, Part } from "@opencode-ai/sdk/v2";
import { UsageError, type CommandContext, type CommandSpec } from "../../commands/types.ts";
import { threadLink } from "../../matrix/format.ts";
import type { OpencodeBackend } from "../backend.ts";
import { describeError } from "../errors.ts";


type Entry = { info: Message; parts: Part[] };

/** Files named in a unified diff, with what happened to each when the diff is applied. */
export function filesInDiff(diff: string | undefined): Array<{ file: string; change: "added" | "deleted" | "modified" }> {
  const out: Array<{ file: string; change: "added" | "deleted" | "modified" }> = [];
  for (const section of (diff ?? "").split(/^(?=diff --git )/m)) {
    const head = /^diff --git a\/(.+?) b\/(.+)$/m.exec(section);
    if (!head) continue;
    const change = /^new file mode/m.test(section) ? "added" : /^deleted file mode/m.test(section) ? "deleted" : "modified";
    out.push({ file: change === "deleted" ? (head[1] as string) : (head[2] as string), change });
  }
  return out;
}

/** What a prompt said, for telling people which turn was meant (attribution and long text cut). */
function promptPreview(entry: Entry | undefined): string {
  const text = (entry?.parts ?? [])
    .filter((p) => p.type === "text")
    .map((p) => (p as { text: string }).text)
    .join(" ")
    .replace(/^\s*\[[^\]\n]*\]\s*/, "")
    .replace(/\s+/g, " ")
    .trim();
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

/** Refuses while a turn runs (reverting under a working agent would fight it); else the thread's directory. */
async function idleDirectory(oc: OpencodeBackend, ctx: CommandContext): Promise<string | undefined> {
  if (oc.threadServer(ctx.thread!).runner.isBusy(ctx.thread!.sessionId)) {
    await ctx.reply(`A turn is running in this session. Wait for it to end, or stop it with \`${oc.prefix} abort\`, then try again.`);
    return undefined;
  }
  return oc.threadDirectory(ctx.thread!);
}

async function load(oc: OpencodeBackend, ctx: CommandContext): Promise<{ directory: string; messages: Entry[] } | undefined> {
  const directory = await idleDirectory(oc, ctx);
  if (directory === undefined) return undefined;
  const res = await oc.threadServer(ctx.thread!).conn.client.session.messages({ sessionID: ctx.thread!.sessionId, directory });
  if (res.error !== undefined) throw new Error(describeError(res.error));
  return { directory, messages: (res.data ?? []) as Entry[] };
}

export function historyCommands(oc: OpencodeBackend): CommandSpec[] {
  const p = oc.prefix;
  return [
    {
      name: "fork",
      args: "[n]",
      summary: "fork the session from its n-th last message (default: the last) into a new thread that links back",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread!;
        const arg = ctx.args.trim();
        if (arg && !/^[1-9]\d{0,3}$/.test(arg)) throw new UsageError(`\`${arg.slice(0, 40)}\` is not a number of messages.`);
        const n = arg ? Number(arg) : 1;
        const loaded = await load(oc, ctx);
        if (!loaded) return;
        // A message is one prompt with its answer: forking "from" it keeps it and what came before.
        const prompts = loaded.messages.filter((m) => m.info.role === "user");
        if (prompts.length === 0) {
          await ctx.reply("Nothing to fork yet: this session has no messages.");
          return;
        }
        if (n > prompts.length) throw new UsageError(`This session has ${prompts.length} message${prompts.length === 1 ? "" : "s"}.`);
        const firstLeftOut = prompts[prompts.length - n + 1];
        // The fork is a session of the same server, and its thread stays there (wherever the room moved since).
        const unit = oc.threadServer(t);
        const res = await unit.conn.client.session.fork({
          sessionID: t.sessionId,
          directory: loaded.directory,
          ...(firstLeftOut ? { messageID: firstLeftOut.info.id } : {}),
        });
        if (!res.data) throw new Error(describeError(res.error));
        const kept = prompts.length - n + 1;
        const where = `after message ${kept} of ${prompts.length} (“${promptPreview(prompts[kept - 1])}”)`;
        const fork = await oc.openThread(
          ctx.msg.roomId,
          res.data.id,
          res.data.title,
          ctx.msg.sender,
          `🍴 **${res.data.title}** — fork of [this thread](${threadLink(t.roomId, t.rootEventId)}) ${where}, session \`${res.data.id}\`. Write in this thread to go on from there.`,
          { directory: loaded.directory, model: t.model, agent: t.agent },
          unit,
        );
        await ctx.reply(`🍴 Forked ${where} into [a new thread](${threadLink(fork.roomId, fork.rootEventId)}), session \`${res.data.id}\`.`);
      },
    },
    {
      name: "undo",
      summary: "revert the last turn of the session and its file changes, showing which files changed back",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread!;
        const loaded = await load(oc, ctx);
        if (!loaded) return;
        const client = oc.threadServer(t).conn.client;
        const session = (await client.session.get({ sessionID: t.sessionId, directory: loaded.directory })).data;
        // Like OpenCode's own /undo: each undo steps back one more prompt from the current revert point.
        const boundary = session?.revert?.messageID;
        const prompts = loaded.messages.filter((m) => m.info.role === "user" && (boundary === undefined || m.info.id < boundary));
        const target = prompts.at(-1);
        if (!target) {
          await ctx.reply("Nothing to undo in this session.");
          return;
        }
        const res = await client.session.revert({ sessionID: t.sessionId, directory: loaded.directory, messageID: target.info.id });
        if (!res.data) throw new Error(describeError(res.error));
        const said = { added: "restored", deleted: "removed", modified: "changed back" } as const;
        const files = filesInDiff(res.data.revert?.diff).map((f) => `\`${f.file}\` (${said[f.change]})`);
        await ctx.reply(
          `↩️ Undid the turn of “${promptPreview(target)}”. ` +
            (files.length ? `Files changed back: ${files.join(", ")}.` : "No files had changed.") +
            ` \`${p} redo\` brings it back; the next prompt makes the undo final.`,
        );
      },
    },
    {
      name: "redo",
      summary: "bring back what `undo` reverted, files included",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread!;
        // Redo needs the revert point only, not the messages.
        const directory = await idleDirectory(oc, ctx);
        if (directory === undefined) return;
        const client = oc.threadServer(t).conn.client;
        const session = (await client.session.get({ sessionID: t.sessionId, directory })).data;
        if (!session?.revert) {
          await ctx.reply("Nothing to redo in this session.");
          return;
        }
        const files = filesInDiff(session.revert.diff).map((f) => `\`${f.file}\``);
        const res = await client.session.unrevert({ sessionID: t.sessionId, directory });
        if (!res.data) throw new Error(describeError(res.error));
        await ctx.reply(`↪️ Redid what was undone. ${files.length ? `Files back as the agent left them: ${files.join(", ")}.` : "No files had changed."}`);
      },
    },
  ];
}
