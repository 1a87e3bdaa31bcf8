import type { MatrixClient } from "matrix-bot-sdk";
import type { IncomingMessage } from "./inbound.ts";

/** Files larger than this are not passed to the agent (models take small attachments). */
export const maxAttachmentBytes = 10 * 1024 * 1024;

/** Downloads the file or image a message carries, through the authenticated media API; at most `maxBytes`. */
export async function downloadMessageFiles(client: MatrixClient, msg: IncomingMessage, maxBytes = maxAttachmentBytes): Promise<Array<{ mime: string; filename: string; data: Buffer }>> {
  const url = msg.content.url;
  if (typeof url !== "string" || !url.startsWith("mxc://")) return [];
  const info = (msg.content.info ?? {}) as { mimetype?: string; size?: number };
  const tooLarge = `the file is larger than ${Math.round((maxBytes / 1024 / 1024) * 10) / 10} MB`;
  if (typeof info.size === "number" && info.size > maxBytes) throw new Error(tooLarge);
  const { data, contentType } = await client.downloadContent(url);
  if (data.length > maxBytes) throw new Error(tooLarge);
  const filename = typeof msg.content.filename === "string" ? msg.content.filename : msg.body || "attachment";
  return [{ mime: info.mimetype ?? contentType ?? "application/octet-stream", filename: filename.slice(0, 200), data }];
}
