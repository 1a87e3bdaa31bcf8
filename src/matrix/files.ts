import type { MatrixClient } from "matrix-bot-sdk";
import type { IncomingMessage } from "./inbound.ts";

/** Files larger than this are not passed to the agent (models take small attachments). */
export const maxAttachmentBytes = 10 * 1024 * 1024;

/** Downloads the file or image a message carries, through the authenticated media API. */
export async function downloadMessageFiles(client: MatrixClient, msg: IncomingMessage): Promise<Array<{ mime: string; filename: string; data: Buffer }>> {
  const url = msg.content.url;
  if (typeof url !== "string" || !url.startsWith("mxc://")) return [];
  const info = (msg.content.info ?? {}) as { mimetype?: string; size?: number };
  if (typeof info.size === "number" && info.size > maxAttachmentBytes) throw new Error(`the file is larger than ${maxAttachmentBytes / 1024 / 1024} MB`);
  const { data, contentType } = await client.downloadContent(url);
  if (data.length > maxAttachmentBytes) throw new Error(`the file is larger than ${maxAttachmentBytes / 1024 / 1024} MB`);
  const filename = typeof msg.content.filename === "string" ? msg.content.filename : msg.body || "attachment";
  return [{ mime: info.mimetype ?? contentType ?? "application/octet-stream", filename: filename.slice(0, 200), data }];
}
