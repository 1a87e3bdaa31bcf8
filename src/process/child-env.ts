// The environment of every process the bot starts (the embedded `opencode serve`, git): an
// allowlist, never a copy of the bot's own. The agent runs `env` as easily as anything else, and
// with the Matrix token in reach it would *be* the bot.

/** Names passed through as they are: what a shell, git and OpenCode need to run at all. */
const passedNames = new Set([
  "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TMP", "TEMP",
  "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
  "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
]);

/** Prefixes passed through: locale, the XDG base directories, OpenCode's own settings. */
const passedPrefixes = ["LC_", "XDG_", "OPENCODE_"];

/**
 * Never passed, whatever the lists above or the operator say: the bot's own credentials and
 * settings (its OPENCODE_SERVER_* include the password of an external server; a server the
 * bot starts gets its own in `extra`).
 */
const neverNames = new Set(["OPENCODE_WORKSPACE_DIR", "OPENCODE_PROJECT_ROOTS", "OPENCODE_PASS_ENV"]);
const neverPrefixes = ["MATRIX_", "BOT_", "LETTA_", "OPENCODE_SERVER_", "TRANSCRIPTION_"];

/** True for a variable name the bot never hands to a child process (its own secrets and settings). */
export function isBotOnlyVariable(name: string): boolean {
  return neverNames.has(name) || neverPrefixes.some((p) => name.startsWith(p));
}

/**
 * The environment for a child process: the allowlisted variables of `from`, the variables the
 * operator named in `passEnv` (e.g. a model provider's API key), then `extra` on top.
 */
export function childEnv(opts: { passEnv?: readonly string[]; extra?: Record<string, string>; from?: NodeJS.ProcessEnv } = {}): Record<string, string> {
  const from = opts.from ?? process.env;
  const named = new Set(opts.passEnv ?? []);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(from)) {
    if (value === undefined || isBotOnlyVariable(name)) continue;
    if (passedNames.has(name) || named.has(name) || passedPrefixes.some((p) => name.startsWith(p))) env[name] = value;
  }
  return { ...env, ...opts.extra };
}
