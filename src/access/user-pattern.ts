/**
 * Patterns of Matrix user ids for `access.allowedUsers` and `access.admins`.
 *
 * A Matrix id is `@localpart:server`, where the server name may carry a port
 * (`example.org:8448`) and the localpart never contains `:`. A pattern has the same two parts:
 * - the user part: `@` and the localpart, where `*` stands for any run of characters (it never
 *   reaches the server part); `*` alone means any user (`*:example.org`);
 * - the server part: a server name (with its port, if the ids carry one), `*.example.org` for
 *   any subdomain of example.org (not example.org itself), or `*` for any server at all, which
 *   only `@*:*` (everyone) may use: `@alice:*` would admit an @alice anybody can register on a
 *   server of their own.
 * Nothing else is special: `?`, `[…]` and `{a,b}` are refused rather than read literally, so a
 * pattern written for a glob library fails loudly instead of matching nothing (or too much).
 */

export type UserMatcher = (userId: string) => boolean;

// Also what `*.` may stand for: DNS labels, never a port or anything with a colon.
const hostName = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/;
const ipv6 = /^\[[0-9A-Fa-f:.]+\]$/;
const port = /^\d{1,5}$/;

/** Server part without wildcard: `host`, `host:port`, `[v6]`, `[v6]:port`. */
function isServerName(s: string): boolean {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(s);
  if (!m) return false;
  const [, host = "", p] = m;
  if (!hostName.test(host) && !ipv6.test(host)) return false;
  return p === undefined || (port.test(p) && Number(p) <= 65535);
}

/** Why `pattern` is not a valid user pattern, or undefined if it is. */
export function patternProblem(pattern: string): string | undefined {
  const example = "write it like `@alice:example.org`, `@alice-*:example.org`, `@*:example.org` or `@*:*.example.org`";
  const shown = `\`${pattern}\``;
  if (/\s/.test(pattern)) return `${shown} contains a space; ${example}`;
  const colon = pattern.indexOf(":");
  if (colon < 0) return `${shown} has no server part (a Matrix id is @user:server); ${example}`;
  const local = pattern.slice(0, colon);
  const server = pattern.slice(colon + 1);
  if (local !== "*" && !/^@./.test(local)) return `${shown}: the user part must start with @ (or be * for any user); ${example}`;
  if (/[?[\]{}\\]/.test(local)) return `${shown}: only * is a wildcard (no ?, […], {…} or \\); list users one by one, or ${example}`;
  if (server === "*") {
    return local === "*" || local === "@*" ? undefined : `${shown} would admit that name on any server, including one anybody can set up; name the server, e.g. \`${local}:example.org\``;
  }
  const rest = server.startsWith("*.") ? server.slice(2) : server;
  if (/[?{}\\*]/.test(rest)) return `${shown}: in the server part, * may only stand for the whole server (\`@*:*\`) or for subdomains (\`*.example.org\`); ${example}`;
  if (!isServerName(rest)) return `${shown}: \`${server}\` is not a server name (host, optionally :port); ${example}`;
  return undefined;
}

/** The user part as an anchored expression: `*` is any run of characters, the rest literal. */
function localRegExp(local: string): RegExp {
  const body = (local === "*" ? "@*" : local)
    .split("*")
    .map((s) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"))
    .join("[^:]*");
  return new RegExp(`^${body}$`, "u");
}

/** A matcher for a pattern that {@link patternProblem} accepts; throws for one it refuses. */
export function userMatcher(pattern: string): UserMatcher {
  const problem = patternProblem(pattern);
  if (problem) throw new Error(`invalid user pattern: ${problem}`);
  const colon = pattern.indexOf(":");
  const localRe = localRegExp(pattern.slice(0, colon));
  const server = pattern.slice(colon + 1);
  const serverMatches: (s: string) => boolean =
    server === "*"
      ? () => true
      : server.startsWith("*.")
        ? (s) => s.endsWith(server.slice(1)) && hostName.test(s.slice(0, s.length - server.length + 1))
        : (s) => s === server;
  return (userId) => {
    const m = /^(@[^:]+):(.+)$/.exec(userId);
    if (!m) return false;
    return localRe.test(m[1] as string) && serverMatches(m[2] as string);
  };
}
