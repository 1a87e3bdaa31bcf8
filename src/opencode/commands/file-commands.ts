import { existsSync, realpathSync } from "node:fs";
import { extname, isAbsolute, posix, relative, resolve, sep } from "node:path";
import { UsageError, type CommandContext, type CommandSpec, echo } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { maxAttachmentBytes } from "../../matrix/files.ts";
import { describeError } from "../errors.ts";
import type { ServerUnit } from "../server-unit.ts";
import { formatSize, readConfinedFile } from "./read-confined.ts";

/** Inline in chat up to this size; larger content is attached as a file. */
const inlineLimit = 6000;

export class OutsideWorkspaceError extends Error {
  override name = "OutsideWorkspaceError";
}

/**
 * Resolves a path a person typed inside `root`, following symlinks: `..`, absolute paths and
 * links that lead outside are refused. Returns the real path, or undefined if nothing is there.
 */
export function confinePath(root: string, typed: string): string | undefined {
  if (typed.includes("\0")) throw new OutsideWorkspaceError("the path contains a NUL character");
  const realRoot = realpathSync(root);
  const lexical = resolve(realRoot, typed);
  if (lexical !== realRoot && !lexical.startsWith(realRoot + sep)) throw new OutsideWorkspaceError(`${echo(typed)} is outside the workspace`);
  if (!existsSync(lexical)) return undefined;
  const real = realpathSync(lexical);
  if (real !== realRoot && !real.startsWith(realRoot + sep)) throw new OutsideWorkspaceError(`${echo(typed)} leads outside the workspace`);
  return real;
}

function sendAttachment(ctx: CommandContext, data: Buffer, filename: string, mime: string): Promise<string> {
  return ctx.services.sender.sendFile({ roomId: ctx.msg.roomId, threadRoot: ctx.root, replyTo: ctx.msg.eventId }, data, filename, mime);
}

const fence = (text: string, lang: string): string => {
  const ticks = text.includes("```") ? "````" : "```";
  return `${ticks}${lang}\n${text.replace(/\n$/, "")}\n${ticks}`;
};

/** `file` on a server of another machine: the path is confined by name, and the server reads it. */
async function showRemoteFile(ctx: CommandContext, unit: ServerUnit, root: string, typed: string): Promise<void> {
  const path = posix.resolve(root, typed);
  if (typed.includes("\0") || (path !== root && !path.startsWith(root.endsWith("/") ? root : `${root}/`))) {
    await ctx.reply(`⛔ Refused: ${echo(typed)} is outside the workspace. Only files inside the workspace can be shown.`);
    return;
  }
  // OpenCode reads a missing file as empty: its directory's listing says whether it is there, and a file.
  const listed = await unit.conn.client.file.list({ directory: root, path: posix.relative(root, posix.dirname(path)) || "." }).catch(() => undefined);
  const isFile = (listed?.data ?? []).some((n) => n.type === "file" && posix.resolve(root, n.path) === path);
  const res = isFile ? await unit.conn.client.file.read({ directory: root, path: posix.relative(root, path) }).catch(() => undefined) : undefined;
  if (!res?.data || res.error !== undefined) {
    await ctx.reply(`No file ${echo(typed)} in the workspace on the OpenCode server \`${unit.name}\`.`);
    return;
  }
  const f = res.data;
  const data = f.encoding === "base64" ? Buffer.from(f.content, "base64") : Buffer.from(f.content, "utf8");
  if (data.length > maxAttachmentBytes) {
    await ctx.reply(`${echo(typed)} is ${formatSize(data.length)}; the limit is ${formatSize(maxAttachmentBytes)}. Ask the agent for the part you need.`);
    return;
  }
  const name = posix.relative(root, path);
  if (f.type === "text" && f.encoding !== "base64" && data.length <= inlineLimit) {
    await ctx.reply(`\`${name}\`\n\n${fence(f.content, extname(name).slice(1))}`);
    return;
  }
  await sendAttachment(ctx, data, name.split("/").join("_") || "file", f.type === "text" ? "text/plain" : (f.mimeType ?? "application/octet-stream"));
}

export function fileCommands(oc: OpencodeBackend): CommandSpec[] {
  return [
    {
      name: "diff",
      summary: "the session's changed files and their diff (attached as a .diff file when long)",
      where: "thread",
      async run(ctx) {
        const t = ctx.thread!;
        const res = await oc.threadServer(t).conn.client.session.diff({ sessionID: t.sessionId, directory: oc.threadDirectory(t) });
        if (res.error !== undefined) throw new Error(describeError(res.error));
        const files = (res.data ?? []).filter((f) => f.file);
        if (files.length === 0) {
          await ctx.reply("No changed files in this session.");
          return;
        }
        const mark = { added: "A", deleted: "D", modified: "M" } as const;
        const summary = files.map((f) => `${mark[f.status ?? "modified"]} \`${f.file}\` +${f.additions} −${f.deletions}`).join("\n");
        const patch = files.map((f) => f.patch ?? "").join("\n");
        if (Buffer.byteLength(patch) <= inlineLimit) {
          await ctx.reply(`**Changed files** (${files.length}):\n${summary}\n\n${fence(patch, "diff")}`);
          return;
        }
        await ctx.reply(`**Changed files** (${files.length}):\n${summary}\n\nThe diff is long; it is attached as a file.`);
        await sendAttachment(ctx, Buffer.from(patch), `${t.sessionId}.diff`, "text/x-diff");
      },
    },
    {
      name: "file",
      args: "<path>",
      summary: "show a file of the workspace (paths outside the workspace are refused)",
      where: "any",
      async run(ctx) {
        const typed = ctx.args.trim();
        if (!typed) throw new UsageError("Which file?");
        const root = ctx.thread ? oc.threadDirectory(ctx.thread) : oc.roomDirectory(ctx.msg.roomId);
        const unit = oc.serverFor(ctx);
        // Another machine's server: its files are not the bot's to read, so that server is asked.
        if (!unit.spec.primary) return showRemoteFile(ctx, unit, root, typed);
        let real: string | undefined;
        try {
          real = confinePath(root, typed);
        } catch (err) {
          if (err instanceof OutsideWorkspaceError) {
            await ctx.reply(`⛔ Refused: ${err.message}. Only files inside the workspace can be shown.`);
            return;
          }
          throw err;
        }
        if (!real) {
          await ctx.reply(`No file ${echo(typed)} in the workspace.`);
          return;
        }
        // A file too large is refused rather than cut: a partial file under the file's own name
        // reads as the whole of it, and of a large log the end matters more than the start.
        const read = readConfinedFile(root, real, maxAttachmentBytes);
        if (read.kind === "outside") {
          await ctx.reply(`⛔ Refused: ${echo(typed)} leads outside the workspace. Only files inside the workspace can be shown.`);
          return;
        }
        if (read.kind === "not-regular") {
          await ctx.reply(`${echo(typed)} is ${read.what}, not a regular file: only files can be shown.`);
          return;
        }
        if (read.kind === "too-large") {
          await ctx.reply(
            `${echo(typed)} is ${formatSize(read.size)}; the limit is ${formatSize(maxAttachmentBytes)}. Ask the agent for the part you need (e.g. the last lines, or the lines that match).`,
          );
          return;
        }
        const data = read.data;
        const name = relative(realpathSync(root), real);
        const binary = data.subarray(0, 8000).includes(0);
        if (!binary && data.length <= inlineLimit) {
          await ctx.reply(`\`${name}\`\n\n${fence(data.toString("utf8"), extname(name).slice(1))}`);
          return;
        }
        await sendAttachment(ctx, data, isAbsolute(name) ? "file" : name.split(sep).join("_"), binary ? "application/octet-stream" : "text/plain");
      },
    },
  ];
}
