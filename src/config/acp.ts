import { z } from "zod";
import { isBotOnlyVariable } from "../process/child-env.ts";

// `acp.agents`: agents that speak the Agent Client Protocol over stdio, each behind a prefix of
// its own. A map has no natural environment-variable form, so this section is file-only.

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").superRefine((name, ctx) => {
  if (isBotOnlyVariable(name)) ctx.addIssue({ code: "custom", message: `${name} is the bot's own setting or secret, which the agent must never see; remove it` });
});

export const acpAgentSchema = z
  .object({
    // The program to start, found on PATH or given by path: e.g. `opencode`, `gemini`, `npx`.
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    // Names of the bot's environment variables the agent gets on top of the allowlist (like
    // opencode.passEnv). The agent is untrusted: the bot's own are refused.
    env: z.array(envName).default([]),
    // Working directory of the agent and of its sessions. Default: opencode.workspaceDir.
    cwd: z.string().min(1).optional(),
    // The word that addresses this agent, e.g. "!gemini".
    prefix: z.string().regex(/^\S+$/, "must be one word without spaces"),
  })
  .strict();

export type AcpAgentConfig = z.infer<typeof acpAgentSchema>;

// A section whose keys are all commented out reads as null: same as leaving it out.
export const acpSchema = z.preprocess(
  (v) => v ?? undefined,
  z
    .object({
      // name → agent. The name is the thread's backend in the database and shows in footers.
      agents: z.record(z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, "must be a short lower-case name (letters, digits, -)"), acpAgentSchema).default({}),
    })
    .strict()
    .optional(),
);

/** Names of the built-in backends: a thread's backend is its name, so an agent cannot take one. */
const reservedNames = new Set(["opencode", "letta"]);

/**
 * Problems with the agents: a name of a built-in backend, or a prefix that is another's (the
 * router matches prefixes case-insensitively). Paths are the keys to name in the error.
 */
export function prefixClashes(agents: Record<string, AcpAgentConfig>, others: Array<{ prefix: string; key: string }>): Array<{ path: string[]; message: string }> {
  const seen = new Map(others.map((o) => [o.prefix.toLowerCase(), o.key]));
  const out: Array<{ path: string[]; message: string }> = [];
  for (const [name, agent] of Object.entries(agents)) {
    if (reservedNames.has(name)) out.push({ path: ["acp", "agents", name], message: `${name} is the name of a built-in backend; call the agent something else (e.g. ${name}-acp)` });
    const key = `acp.agents.${name}.prefix`;
    const taken = seen.get(agent.prefix.toLowerCase());
    if (taken !== undefined) out.push({ path: ["acp", "agents", name, "prefix"], message: `${agent.prefix} is already the prefix of ${taken}` });
    else seen.set(agent.prefix.toLowerCase(), key);
  }
  return out;
}
