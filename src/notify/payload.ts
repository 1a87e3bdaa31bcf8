import { z } from "zod";

// The body of POST /notify: the payload of the original design note's OpenCode plugin
// ({title, message, taskId, status}), with `sessionId` accepted beside (or instead of) taskId.
// Unknown keys are ignored, so a newer plugin may send more.

const id = z.string().min(1, "must not be empty").max(256, "must be at most 256 characters").regex(/^\S+$/, "must not contain spaces");

export const notifyPayloadSchema = z.object({
  title: z.string({ error: "is required: a short headline (string)" }).trim().min(1, "must not be empty").max(200, "must be at most 200 characters"),
  message: z.string({ error: "must be a string" }).max(4000, "must be at most 4000 characters").default(""),
  status: z
    .string({ error: "is required: completed, error, permission, file_edit or another short word" })
    .regex(/^[a-z][a-z0-9_.-]{0,39}$/, "must be a short lower-case word such as completed, error, permission or file_edit"),
  sessionId: id.optional(),
  // The design note's plugin put the session id here; null when it had none.
  taskId: z.union([id, z.number().int()], { error: "must be a string or a number" }).nullish(),
});

export type NotifyPayload = z.infer<typeof notifyPayloadSchema>;

export type ParseResult = { ok: true; payload: NotifyPayload } | { ok: false; error: string; fields: Record<string, string> };

/** Validates a parsed JSON body; on failure names every bad field. */
export function parseNotifyPayload(body: unknown): ParseResult {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, error: "the body must be a JSON object like {\"title\", \"message\", \"status\", \"sessionId\"}", fields: {} };
  }
  const result = notifyPayloadSchema.safeParse(body);
  if (result.success) return { ok: true, payload: result.data };
  const fields: Record<string, string> = {};
  for (const issue of result.error.issues) {
    const key = issue.path.join(".") || "(body)";
    fields[key] ??= issue.message;
  }
  const error = `invalid field${Object.keys(fields).length > 1 ? "s" : ""}: ${Object.entries(fields).map(([k, m]) => `${k} ${m}`).join("; ")}`;
  return { ok: false, error, fields };
}

/** The session a notification is about: `sessionId`, else the design note's `taskId`. */
export function sessionOf(p: NotifyPayload): string | undefined {
  return p.sessionId ?? (p.taskId === undefined || p.taskId === null ? undefined : String(p.taskId));
}
