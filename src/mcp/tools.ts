import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { Logger } from "../log.ts";
import { confinePath, OutsideWorkspaceError } from "../opencode/commands/file-commands.ts";
import { formatSize, readConfinedFile } from "../opencode/commands/read-confined.ts";
import { DelegationRefused, type DelegationBinding, type DelegationResult, type Delegator } from "../opencode/delegate.ts";
import { describeError } from "../opencode/errors.ts";

/** The tools, as the bot serves them over MCP and registers them with Letta (letta-tools.ts). */
export const toolSpecs = {
  opencode_run_task: {
    description:
      "Hand a coding task to OpenCode, a coding agent working in the room's project. Its work streams into the Matrix thread you are answering, " +
      "where people can watch, approve commands and stop it. Waits for OpenCode to finish (up to about a minute) and returns its final text, " +
      "the changed files and the outcome (done, failed, aborted, or running: then call opencode_task_status).",
    args: {
      title: { description: "A short title for the task, shown in the thread (e.g. 'Fix empty-password login')", required: true },
      prompt: { description: "What OpenCode should do, with everything it needs to know", required: true },
      project: { description: "Optional project directory, relative to the bot's project roots; default: the room's project", required: false },
    },
  },
  opencode_send_message: {
    description: "Send a follow-up message to an OpenCode session you started with opencode_run_task; waits like opencode_run_task.",
    args: {
      sessionId: { description: "The OpenCode session id (ses_…) from opencode_run_task", required: true },
      text: { description: "The message for OpenCode", required: true },
    },
  },
  opencode_task_status: {
    description: "The state of an OpenCode session you started: its result when done; while it runs, waits for it (up to about a minute).",
    args: { sessionId: { description: "The OpenCode session id (ses_…)", required: true } },
  },
  opencode_read_file: {
    description: "Read a text file of the project an OpenCode session of yours works in (paths outside it are refused).",
    args: {
      sessionId: { description: "The OpenCode session id (ses_…)", required: true },
      path: { description: "The file's path, relative to the project directory", required: true },
    },
  },
} as const;

export type ToolName = keyof typeof toolSpecs;

/** Letta cuts a tool's return at 50,000 characters: a larger file would arrive cut without saying so. */
const readLimit = 48 * 1024;

type ToolAnswer = { content: Array<{ type: "text"; text: string }>; isError?: boolean };

const answer = (r: DelegationResult): ToolAnswer => ({ content: [{ type: "text", text: JSON.stringify(r) }] });
const refused = (text: string): ToolAnswer => ({ content: [{ type: "text", text }], isError: true });

/** The agent's title, one line (the headline shows its markup instead of obeying it). */
const plainTitle = (title: string): string => title.replace(/\s+/g, " ").trim().slice(0, 120);

export interface ToolContext {
  agentId: string;
  bind: (agentId: string) => DelegationBinding;
  delegator: Delegator;
  log: Logger;
}

/** Runs one tool call: tied to the caller's thread first, refused in plain words when it cannot be. */
async function guarded(ctx: ToolContext, name: ToolName, fn: (b: DelegationBinding) => Promise<ToolAnswer>): Promise<ToolAnswer> {
  let b: DelegationBinding;
  try {
    b = ctx.bind(ctx.agentId);
  } catch (err) {
    ctx.log.info({ agentId: ctx.agentId, tool: name, reason: (err as Error).message }, "MCP call refused");
    return refused((err as Error).message);
  }
  try {
    ctx.log.info({ agentId: ctx.agentId, tool: name, roomId: b.roomId, thread: b.rootEventId }, "MCP call");
    return await fn(b);
  } catch (err) {
    if (err instanceof DelegationRefused) return refused(err.message);
    ctx.log.warn({ err, agentId: ctx.agentId, tool: name }, "MCP call failed");
    return refused(`OpenCode could not do it: ${describeError(err)}`);
  }
}

function readFile(ctx: ToolContext, b: DelegationBinding, sessionId: string, path: string): ToolAnswer {
  const row = ctx.delegator.owned(b, sessionId);
  let real: string | undefined;
  try {
    real = confinePath(row.directory, path);
  } catch (err) {
    if (err instanceof OutsideWorkspaceError) return refused(`Refused: ${err.message.replace(/workspace/, "project")}.`);
    throw err;
  }
  if (real === undefined) return refused(`There is no file ${path} in the project.`);
  const read = readConfinedFile(row.directory, real, readLimit);
  if (read.kind === "outside") return refused(`Refused: ${path} leads outside the project.`);
  if (read.kind === "not-regular") return refused(`${path} is ${read.what}, not a file.`);
  if (read.kind === "too-large") return refused(`${path} is ${formatSize(read.size)}; at most ${formatSize(readLimit)} can be read.`);
  if (read.data.includes(0)) return refused(`${path} is not a text file.`);
  return { content: [{ type: "text", text: read.data.toString("utf8") }] };
}

/** One MCP server for one authenticated call (stateless: a restart loses no session). */
export function toolServer(ctx: ToolContext): McpServer {
  const server = new McpServer({ name: "matrix-agent-bot", version: "1.0.0" });
  const s = toolSpecs;
  server.registerTool(
    "opencode_run_task",
    {
      description: s.opencode_run_task.description,
      inputSchema: {
        title: z.string().min(1).max(200).describe(s.opencode_run_task.args.title.description),
        prompt: z.string().min(1).max(50_000).describe(s.opencode_run_task.args.prompt.description),
        project: z.string().max(500).optional().describe(s.opencode_run_task.args.project.description),
      },
    },
    (a) => guarded(ctx, "opencode_run_task", async (b) => answer(await ctx.delegator.runTask(b, plainTitle(a.title), a.prompt, a.project || undefined))),
  );
  server.registerTool(
    "opencode_send_message",
    {
      description: s.opencode_send_message.description,
      inputSchema: { sessionId: z.string().min(1).max(200).describe(s.opencode_send_message.args.sessionId.description), text: z.string().min(1).max(50_000).describe(s.opencode_send_message.args.text.description) },
    },
    (a) => guarded(ctx, "opencode_send_message", async (b) => answer(await ctx.delegator.sendMessage(b, a.sessionId, a.text))),
  );
  server.registerTool(
    "opencode_task_status",
    { description: s.opencode_task_status.description, inputSchema: { sessionId: z.string().min(1).max(200).describe(s.opencode_task_status.args.sessionId.description) } },
    (a) => guarded(ctx, "opencode_task_status", async (b) => answer(await ctx.delegator.status(b, a.sessionId))),
  );
  server.registerTool(
    "opencode_read_file",
    {
      description: s.opencode_read_file.description,
      inputSchema: { sessionId: z.string().min(1).max(200).describe(s.opencode_read_file.args.sessionId.description), path: z.string().min(1).max(4096).describe(s.opencode_read_file.args.path.description) },
    },
    (a) => guarded(ctx, "opencode_read_file", (b) => Promise.resolve(readFile(ctx, b, a.sessionId, a.path))),
  );
  return server;
}
