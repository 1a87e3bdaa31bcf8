import { ConfigError, settingName } from "../config/load.ts";
import type { BotConfig } from "../config/schema.ts";

// config/config.example.yaml and .env.example are copied and started before they are filled in;
// their made-up values pass validation and would fail later, far from their cause (a token the
// homeserver refuses, an allow-list nobody is on). Named here they fail at once, by key.
// test/unit/placeholders.test.ts keeps this list in step with the example files.

/** Values of the example files that are no one's real setting. */
export const exampleValues: ReadonlyArray<{ path: string; value: string; fix: string }> = [
  { path: "matrix.accessToken", value: "syt_replace_me", fix: "put the bot's access token there, or set matrix.userId and matrix.password instead" },
  { path: "matrix.password", value: "...", fix: "put the bot account's password there" },
  { path: "opencode.password", value: "...", fix: "put the OpenCode server's password there, or remove the key if it has none" },
  { path: "letta.apiToken", value: "...", fix: "put the Letta server's token there, or remove the key if it has none" },
  { path: "notify.token", value: "replace-with-a-long-random-string", fix: "make one up (openssl rand -hex 32), or remove the key to turn /notify off" },
];

/**
 * Domains reserved for examples (RFC 2606): no homeserver, user or room lives there, so an id or
 * URL on one is a value from an example that was not replaced.
 */
export function isExampleDomain(host: string): boolean {
  return /(^|\.)example\.(org|com|net)(:\d+)?$/i.test(host);
}

const serverOfId = (id: string): string => id.slice(id.indexOf(":") + 1);
/** A setting at the start of a sentence: "matrix.accessToken (from MATRIX_ACCESS_TOKEN)". */
const subject = (path: string, env: NodeJS.ProcessEnv): string => {
  const [key, variable] = settingName(path, env).split(", from ");
  return variable === undefined ? path : `${key} (from ${variable})`;
};
const hostOfUrl = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return "";
  }
};

/** One line per example value left in `config`, naming the key (and the variable it came from). */
export function placeholderProblems(config: BotConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const problems: string[] = [];
  const valueAt = (path: string): unknown => path.split(".").reduce<unknown>((node, key) => (node !== null && typeof node === "object" ? (node as Record<string, unknown>)[key] : undefined), config);
  for (const { path, value, fix } of exampleValues) {
    if (valueAt(path) === value) problems.push(`${subject(path, env)} is still the example's placeholder "${value}": ${fix}.`);
  }
  const urls: Array<[string, string | undefined, string]> = [
    ["matrix.homeserverUrl", config.matrix.homeserverUrl, "put your homeserver's client-server URL there"],
    ["opencode.serverUrl", config.opencode.serverUrl, "put your OpenCode server's URL there, or remove the key to let the bot start its own"],
    ["letta.baseUrl", config.letta.baseUrl, "put your Letta server's URL there, or remove the key"],
  ];
  for (const [path, url, fix] of urls) {
    if (url !== undefined && isExampleDomain(hostOfUrl(url))) problems.push(`${subject(path, env)} is still the example's ${url}: ${fix}.`);
  }
  if (config.matrix.userId !== undefined && isExampleDomain(serverOfId(config.matrix.userId))) {
    problems.push(`${subject("matrix.userId", env)} is still the example's ${config.matrix.userId}: put the bot account's Matrix id there.`);
  }
  const lists: Array<[string, string[], string]> = [
    ["access.allowedUsers", config.access.allowedUsers, "list the Matrix ids (or patterns) of the people who may use the bot"],
    ["access.admins", config.access.admins, "list the bot's operators, or leave the list empty"],
  ];
  for (const [path, list, fix] of lists) {
    const examples = list.filter((p) => isExampleDomain(serverOfId(p)));
    if (examples.length > 0) problems.push(`${subject(path, env)} still holds the example's ${examples.map((p) => `"${p}"`).join(", ")}: ${fix}.`);
  }
  const room = config.notify.defaultRoom;
  if (room !== undefined && isExampleDomain(serverOfId(room))) problems.push(`${subject("notify.defaultRoom", env)} is still the example's "${room}": put a room id the bot is in there, or remove the key.`);
  return problems;
}

/** Throws a ConfigError listing every example value left in `config`. */
export function refusePlaceholders(config: BotConfig, env: NodeJS.ProcessEnv = process.env): void {
  const problems = placeholderProblems(config, env);
  if (problems.length > 0) throw new ConfigError(problems.join("\n"));
}
