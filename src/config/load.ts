import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { ZodError } from "zod";
import { configSchema, type BotConfig } from "./schema.ts";
import { transcriptionEnv } from "./transcription.ts";

type Kind = "string" | "number" | "list";

// Environment variables that override the YAML file. The OpenCode names are those of the
// original design note, so existing deployments keep working.
export const envOverrides: ReadonlyArray<{ env: string; path: string; kind: Kind }> = [
  { env: "MATRIX_HOMESERVER_URL", path: "matrix.homeserverUrl", kind: "string" },
  { env: "MATRIX_ACCESS_TOKEN", path: "matrix.accessToken", kind: "string" },
  { env: "MATRIX_USER_ID", path: "matrix.userId", kind: "string" },
  { env: "MATRIX_PASSWORD", path: "matrix.password", kind: "string" },
  { env: "MATRIX_REQUEST_TIMEOUT_MS", path: "matrix.requestTimeoutMs", kind: "number" },
  { env: "MATRIX_MAX_CONCURRENT_REQUESTS", path: "matrix.maxConcurrentRequests", kind: "number" },
  { env: "BOT_ALLOWED_USERS", path: "access.allowedUsers", kind: "list" },
  { env: "BOT_ADMINS", path: "access.admins", kind: "list" },
  { env: "BOT_COMMAND_PREFIX", path: "commands.prefix", kind: "string" },
  { env: "OPENCODE_SERVER_URL", path: "opencode.serverUrl", kind: "string" },
  { env: "OPENCODE_WORKSPACE_DIR", path: "opencode.workspaceDir", kind: "string" },
  { env: "OPENCODE_SERVER_HEALTH_CHECK_INTERVAL_MS", path: "opencode.healthCheckIntervalMs", kind: "number" },
  { env: "OPENCODE_SERVER_MAX_RETRIES", path: "opencode.maxRetries", kind: "number" },
  { env: "OPENCODE_SERVER_RETRY_DELAY_MS", path: "opencode.retryDelayMs", kind: "number" },
  { env: "OPENCODE_REQUEST_TIMEOUT_MS", path: "opencode.requestTimeoutMs", kind: "number" },
  { env: "OPENCODE_SERVER_USERNAME", path: "opencode.username", kind: "string" },
  { env: "OPENCODE_SERVER_PASSWORD", path: "opencode.password", kind: "string" },
  { env: "OPENCODE_PASS_ENV", path: "opencode.passEnv", kind: "list" },
  { env: "OPENCODE_SANDBOX", path: "opencode.sandbox", kind: "string" },
  { env: "LETTA_BASE_URL", path: "letta.baseUrl", kind: "string" },
  { env: "LETTA_API_TOKEN", path: "letta.apiToken", kind: "string" },
  { env: "LETTA_COMMAND_PREFIX", path: "letta.prefix", kind: "string" },
  { env: "LETTA_DEFAULT_AGENT", path: "letta.defaultAgent", kind: "string" },
  { env: "LETTA_MODEL", path: "letta.model", kind: "string" },
  { env: "LETTA_EMBEDDING", path: "letta.embedding", kind: "string" },
  { env: "LETTA_MAX_RETRIES", path: "letta.maxRetries", kind: "number" },
  { env: "LETTA_RETRY_DELAY_MS", path: "letta.retryDelayMs", kind: "number" },
  { env: "LETTA_TIMEOUT_MS", path: "letta.timeoutMs", kind: "number" },
  { env: "LETTA_DELEGATE_TO_OPENCODE", path: "letta.delegateToOpencode", kind: "string" },
  { env: "LETTA_MCP_URL", path: "letta.mcpUrl", kind: "string" },
  { env: "LETTA_DELEGATION_WAIT_MS", path: "letta.delegationWaitMs", kind: "number" },
  { env: "BOT_EDIT_WINDOW_MS", path: "rendering.editWindowMs", kind: "number" },
  { env: "BOT_MAX_EDIT_WINDOW_MS", path: "rendering.maxEditWindowMs", kind: "number" },
  { env: "BOT_COMPLETION_NOTICE_AFTER_MS", path: "rendering.completionNoticeAfterMs", kind: "number" },
  { env: "OPENCODE_PROJECT_ROOTS", path: "opencode.projectRoots", kind: "list" },
  { env: "BOT_DATABASE_PATH", path: "database.path", kind: "string" },
  { env: "BOT_INBOX_RETENTION_MS", path: "database.inboxRetentionMs", kind: "number" },
  { env: "BOT_HTTP_PORT", path: "http.port", kind: "number" },
  { env: "BOT_HTTP_HOST", path: "http.host", kind: "string" },
  { env: "BOT_NOTIFY_TOKEN", path: "notify.token", kind: "string" },
  { env: "BOT_NOTIFY_ROOM", path: "notify.defaultRoom", kind: "string" },
  { env: "BOT_NOTIFY_PER_TOKEN_PER_MINUTE", path: "notify.perTokenPerMinute", kind: "number" },
  { env: "BOT_NOTIFY_PER_SESSION_PER_MINUTE", path: "notify.perSessionPerMinute", kind: "number" },
  { env: "BOT_SCHEDULE_POLL_INTERVAL_MS", path: "schedule.pollIntervalMs", kind: "number" },
  { env: "BOT_SCHEDULE_TIMEZONE", path: "schedule.timezone", kind: "string" },
  { env: "LOG_LEVEL", path: "log.level", kind: "string" },
  ...transcriptionEnv,
];

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** A setting as its owner knows it: the key, and the environment variable when the value came from one. */
export function settingName(path: string, env: NodeJS.ProcessEnv = process.env): string {
  const over = envOverrides.find((o) => o.path === path);
  const raw = over ? env[over.env] : undefined;
  return over && raw !== undefined && raw !== "" ? `${path}, from ${over.env}` : path;
}

type Tree = Record<string, unknown>;

function setPath(tree: Tree, path: string, value: unknown): void {
  const keys = path.split(".");
  let node = tree;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Tree;
  }
  node[keys[keys.length - 1] as string] = value;
}

function coerce(raw: string, kind: Kind): unknown {
  if (kind === "list") return raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  // A non-numeric value stays a string so that validation names the key and says "expected number".
  if (kind === "number") return /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
  return raw;
}

function describe(error: ZodError, fromEnv: Map<string, string>): string {
  const lines = error.issues.map((issue) => {
    const key = issue.path.join(".") || "(root)";
    // An item of a list (`opencode.passEnv.0`) came from the list's variable.
    const env = fromEnv.get(key) ?? (typeof issue.path.at(-1) === "number" ? fromEnv.get(issue.path.slice(0, -1).join(".")) : undefined);
    return `  - ${key}${env ? ` (from ${env})` : ""}: ${issue.message}`;
  });
  return `Invalid configuration:\n${lines.join("\n")}`;
}

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

/** The config file loadConfig reads: --config, else BOT_CONFIG, else config/config.yaml if there is one. */
export function configFileOf(opts: LoadOptions = {}): string | undefined {
  return opts.file ?? (opts.env ?? process.env).BOT_CONFIG ?? (existsSync("config/config.yaml") ? "config/config.yaml" : undefined);
}

/** Reads the YAML file (if any), applies environment overrides, validates. Throws ConfigError naming each bad key. */
export function loadConfig(opts: LoadOptions = {}): BotConfig {
  const env = opts.env ?? process.env;
  const file = configFileOf(opts);
  let tree: Tree = {};
  if (file !== undefined) {
    if (!existsSync(file)) throw new ConfigError(`Config file not found: ${file}`);
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(file, "utf8"));
    } catch (err) {
      throw new ConfigError(`Config file ${file} is not valid YAML: ${(err as Error).message}`);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== "object" || Array.isArray(parsed)) throw new ConfigError(`Config file ${file} must hold a mapping of keys`);
      tree = parsed as Tree;
    }
  }
  const fromEnv = new Map<string, string>();
  for (const { env: name, path, kind } of envOverrides) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    setPath(tree, path, coerce(raw, kind));
    fromEnv.set(path, name);
  }
  const result = configSchema.safeParse(tree);
  if (!result.success) throw new ConfigError(describe(result.error, fromEnv));
  return result.data;
}
