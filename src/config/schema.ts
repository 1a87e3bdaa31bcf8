import { z } from "zod";
import { patternProblem } from "../access/user-pattern.ts";
import { isBotOnlyVariable } from "../process/child-env.ts";
import { acpSchema, prefixClashes } from "./acp.ts";
import { opencodeServersSchema } from "./opencode-servers.ts";
import { transcriptionSchema } from "./transcription.ts";

// Every key the bot understands, with its default, in one place. The example file in
// config/config.example.yaml documents the same keys; a unit test keeps the two in step.
// A missing section is parsed as `{}` (`prefault`), so each default is stated on its key only.

const matrixId = z.string().regex(/^@[^:\s]+:\S+$/, "must be a Matrix user id like @bot:example.org");
const userPattern = z.string().superRefine((p, ctx) => {
  const problem = patternProblem(p);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});
const httpUrl = z.string().url().refine((u) => /^https?:\/\//.test(u), "must be an http(s) URL");
// A switch: true/false in the file; "true", "false", "1", "0", "on", "off" from the environment.
const flag = z.preprocess((v) => {
  if (typeof v !== "string") return v;
  const t = v.trim().toLowerCase();
  return ["true", "1", "on", "yes"].includes(t) ? true : ["false", "0", "off", "no", ""].includes(t) ? false : v;
}, z.boolean());

export const configSchema = z.object({
  matrix: z
    .object({
      homeserverUrl: httpUrl,
      accessToken: z.string().min(1).optional(),
      userId: matrixId.optional(),
      password: z.string().min(1).optional(),
      deviceName: z.string().default("agent-bot"),
      // Longest wait (ms) for the homeserver to answer a request (not the long-polling sync).
      requestTimeoutMs: z.number().int().min(1000).default(30_000),
      // Requests to the homeserver in flight at once (the sync aside). Beyond it they wait in the
      // bot, in order of importance: acknowledgements and final answers before streamed edits.
      maxConcurrentRequests: z.number().int().min(1).max(100).default(6),
    })
    .strict()
    .refine((m) => m.accessToken !== undefined || (m.userId !== undefined && m.password !== undefined), {
      message: "set matrix.accessToken, or both matrix.userId and matrix.password",
      path: ["accessToken"],
    }),
  access: z
    .object({
      // Matrix ids or patterns (src/access/user-pattern.ts): "@alice:example.org", "@*:example.org".
      allowedUsers: z.array(userPattern).min(1, "list at least one user or pattern"),
      // The bot's operators: commands that touch what all rooms share (restarting the OpenCode
      // server, making Letta agents). Empty: nobody. Admins are allowed users as well.
      admins: z.array(userPattern).default([]),
      // How often a stranger may be told they are not allowed, per room.
      strangerNoticeIntervalMs: z.number().int().min(0).default(600_000),
    })
    .strict(),
  commands: z
    .object({
      prefix: z.string().regex(/^\S+$/, "must be one word without spaces").default("!oc"),
    })
    .strict()
    .prefault({}),
  opencode: z
    .object({
      // Empty: the bot starts its own `opencode serve` on a free loopback port.
      serverUrl: httpUrl.optional(),
      workspaceDir: z.string().min(1).default("./workspace"),
      // Directories `!oc project` may point a room at (the room's project must lie inside one). Default: the workspace.
      projectRoots: z.array(z.string().min(1)).optional(),
      healthCheckIntervalMs: z.number().int().positive().default(5000),
      maxRetries: z.number().int().min(0).default(3),
      retryDelayMs: z.number().int().positive().default(1000),
      // Longest wait (ms) for OpenCode to answer a request (not the event stream, nor `/command`s).
      requestTimeoutMs: z.number().int().min(100).default(30_000),
      username: z.string().optional(),
      password: z.string().optional(),
      // Names of the bot's environment variables the embedded server (and so the agent) gets,
      // e.g. a model provider's API key. The bot's own secrets are never among them.
      passEnv: z.array(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").superRefine((name, ctx) => {
          if (isBotOnlyVariable(name)) ctx.addIssue({ code: "custom", message: `${name} is the bot's own setting or secret, which the agent must never see; remove it from opencode.passEnv` });
        }),
      ).default([]),
      // The embedded server in a bubblewrap sandbox: the bot's database, config and processes out of
      // the agent's sight, everything but the projects read-only. "auto": when bwrap works here.
      sandbox: z.enum(["auto", "bwrap", "off"]).default("auto"),
      // More OpenCode servers by name, beside this one (named `default`); file only (src/config/opencode-servers.ts).
      servers: opencodeServersSchema,
    })
    .strict()
    .prefault({}),
  letta: z
    .object({
      // Unset: no Letta backend (no `!letta` commands).
      baseUrl: httpUrl.optional(),
      apiToken: z.string().min(1).optional(),
      prefix: z.string().regex(/^\S+$/, "must be one word without spaces").default("!letta"),
      // Agent (name or id) for rooms that have not chosen one with `!letta use`.
      defaultAgent: z.string().min(1).optional(),
      // Model handle for `!letta new`, e.g. "openai/gpt-4.1-mini"; embedding handle likewise (optional).
      model: z.string().min(1).optional(),
      embedding: z.string().min(1).optional(),
      // Retries of a request Letta cannot have processed: a refused connection; a send that timed out or got a 5xx only when Letta provably lacks the message.
      maxRetries: z.number().int().min(0).default(3),
      retryDelayMs: z.number().int().positive().default(1000),
      // Until the answer starts; also the longest silence allowed in a streamed answer.
      timeoutMs: z.number().int().positive().default(60_000),
      // Agents the bot creates or binds get tools to hand coding tasks to OpenCode, whose work
      // streams into the Letta thread (README: "Letta delegates to OpenCode"). Rooms may turn it off.
      delegateToOpencode: flag.default(false),
      // The bot's MCP endpoint as the Letta server reaches it. Default: http://<http.host>:<http.port>/mcp.
      mcpUrl: httpUrl.optional(),
      // How long a tool call waits for OpenCode before it answers "still running" (Letta gives a tool 60 s over MCP).
      delegationWaitMs: z.number().int().min(1000).max(170_000).default(50_000),
    })
    .strict()
    .prefault({}),
  rendering: z
    .object({
      // Streamed text is coalesced into one edit per window: fewer requests, same final text.
      editWindowMs: z.number().int().min(50).default(1000),
      // The widest the window grows when the homeserver is slow or answers 429 (it narrows again by itself).
      maxEditWindowMs: z.number().int().min(50).default(20_000),
      // A turn that runs at least this long ends with a short notice mentioning who asked, so phones push
      // (0: every turn does). Failures always mention; an aborted turn never does; streamed edits never do.
      completionNoticeAfterMs: z.number().int().min(0).default(0),
    })
    .strict()
    .prefault({}),
  database: z
    .object({
      path: z.string().min(1).default("./data/bot.db"),
      // Handled Matrix events are kept this long (ms) to recognise a replayed sync, then deleted.
      inboxRetentionMs: z.number().int().min(60_000).default(86_400_000),
    })
    .strict()
    .prefault({}),
  http: z
    .object({
      port: z.number().int().min(0).max(65535).default(8080),
      host: z.string().default("127.0.0.1"),
    })
    .strict()
    .prefault({}),
  // A section whose keys are all commented out reads as null: same as leaving it out.
  notify: z.preprocess((v) => v ?? undefined, z
    .object({
      // Bearer token for POST /notify. Unset: the endpoint answers 404 "notify is disabled".
      token: z.string().min(16, "use at least 16 characters (e.g. `openssl rand -hex 32`)").optional(),
      // Room for notifications of sessions that have no thread (the bot must be in it).
      // Room ids of room versions up to 11 end in ":server"; those of version 12 do not.
      defaultRoom: z.string().regex(/^![^\s:]+(:\S+)?$/, "must be a room id like !abc123:example.org").optional(),
      // The token is in the agent's environment: what holds it may post this many a minute (429 past it).
      perTokenPerMinute: z.number().int().min(1).default(30),
      perSessionPerMinute: z.number().int().min(1).default(10),
    })
    .strict()
    .prefault({})),
  schedule: z
    .object({
      // How often the bot looks for due prompts of the `send` CLI (ms).
      pollIntervalMs: z.number().int().min(100).default(1000),
      // IANA time zone that cron expressions of scheduled prompts are read in.
      timezone: z.string().min(1).refine((tz) => {
        try {
          new Intl.DateTimeFormat("en", { timeZone: tz });
          return true;
        } catch {
          return false;
        }
      }, "must be an IANA time zone such as UTC or Europe/Berlin").default("UTC"),
    })
    .strict()
    .prefault({}),
  log: z
    .object({ level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info") })
    .strict()
    .prefault({}),
  // Agents speaking the Agent Client Protocol, each behind its own prefix (src/config/acp.ts). File only.
  acp: acpSchema,
  // Voice messages to prompts through an OpenAI-compatible transcription endpoint (src/config/transcription.ts).
  transcription: transcriptionSchema,
}).superRefine((c, ctx) => {
  const others = [{ prefix: c.commands.prefix, key: "commands.prefix" }, { prefix: c.letta.prefix, key: "letta.prefix" }];
  for (const issue of prefixClashes(c.acp?.agents ?? {}, others)) ctx.addIssue({ code: "custom", ...issue });
});

export type BotConfig = z.infer<typeof configSchema>;
