import type { FilePartInput, TextPartInput } from "@opencode-ai/sdk/v2";
import type { PromptRequest } from "../commands/backend.ts";
import type { Logger } from "../log.ts";
import type { OpencodeConnection } from "./connection.ts";
import { describeError } from "./errors.ts";
import type { CommandCall, PromptOptions } from "./prompt-queue.ts";

/** Everything one prompt sends to OpenCode, so that a re-send after a restart sends the same. */
export interface PromptCall {
  sessionId: string;
  messageId: string;
  text: string;
  files?: PromptRequest["files"];
  opts: PromptOptions;
  command?: CommandCall | undefined;
}

type Stored = Omit<PromptCall, "sessionId" | "messageId" | "files"> & { files?: Array<{ mime: string; filename: string; data: string }> };

/** What the turn row keeps until the turn ends (files as base64). */
export function encodePrompt(call: PromptCall): string {
  const stored: Stored = {
    text: call.text,
    opts: call.opts,
    ...(call.command ? { command: call.command } : {}),
    ...(call.files?.length ? { files: call.files.map((f) => ({ mime: f.mime, filename: f.filename, data: f.data.toString("base64") })) } : {}),
  };
  return JSON.stringify(stored);
}

export function decodePrompt(json: string, sessionId: string, messageId: string): PromptCall {
  const s = JSON.parse(json) as Stored;
  return { ...s, sessionId, messageId, files: s.files?.map((f) => ({ ...f, data: Buffer.from(f.data, "base64") })) };
}

/** Sends a prompt; resolves with why OpenCode refused it, or undefined once it is accepted. */
export async function sendPrompt(conn: OpencodeConnection, call: PromptCall): Promise<string | undefined> {
  const parts: Array<TextPartInput | FilePartInput> = [{ type: "text", text: call.text }];
  for (const f of call.files ?? []) parts.push({ type: "file", mime: f.mime, filename: f.filename, url: `data:${f.mime};base64,${f.data.toString("base64")}` });
  try {
    const res = await conn.client.session.promptAsync({
      sessionID: call.sessionId,
      directory: call.opts.directory,
      messageID: call.messageId,
      parts,
      ...(call.opts.model ? { model: call.opts.model } : {}),
      ...(call.opts.agent ? { agent: call.opts.agent } : {}),
    });
    return res.error !== undefined ? describeError(res.error) : undefined;
  } catch (err) {
    return describeError(err);
  }
}

/**
 * Runs an OpenCode `/command`. OpenCode answers the request only when its turn is over, so it
 * is not awaited: the turn is followed through its events like any other; `refused` is
 * called only when OpenCode says no.
 */
export function sendCommand(conn: OpencodeConnection, call: PromptCall & { command: CommandCall }, refused: (why: string) => void, log: Logger): void {
  const { opts, command } = call;
  conn.client.session
    .command({
      sessionID: call.sessionId,
      directory: opts.directory,
      messageID: call.messageId,
      command: command.name,
      arguments: command.args,
      ...(opts.model ? { model: `${opts.model.providerID}/${opts.model.modelID}` } : {}),
      ...(opts.agent ? { agent: opts.agent } : {}),
    })
    .then(
      (res) => {
        if (res.error !== undefined) refused(describeError(res.error));
      },
      // A long command can outlive the HTTP client's patience; its events still end the turn.
      (err: unknown) => log.warn({ err, sessionId: call.sessionId }, "the command request ended without an answer"),
    );
}
