import { randomBytes } from "node:crypto";

/** The user name `opencode serve` expects when OPENCODE_SERVER_USERNAME is not set. */
export const defaultOpencodeUsername = "opencode";

export interface OpencodeAuth {
  /** Unset: OpenCode's default, "opencode". */
  username?: string | undefined;
  password: string;
}

/**
 * Credentials for a server the bot starts itself: fresh for every bot process, so no file or
 * setting holds them and a local process that did not get them cannot drive the server.
 */
export function generateOpencodeAuth(): Required<OpencodeAuth> {
  return { username: defaultOpencodeUsername, password: randomBytes(24).toString("base64url") };
}

/** The Authorization header for `auth`; none without a password (an open server). */
export function basicAuthHeaders(auth: { username?: string | undefined; password?: string | undefined } | undefined): Record<string, string> {
  if (auth?.password === undefined || auth.password === "") return {};
  const user = auth.username || defaultOpencodeUsername;
  return { authorization: `Basic ${Buffer.from(`${user}:${auth.password}`).toString("base64")}` };
}
