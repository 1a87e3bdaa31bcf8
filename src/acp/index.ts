import { resolve } from "node:path";
import { ConfigError } from "../config/load.ts";
import type { BotConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { childEnv } from "../process/child-env.ts";
import { botStateHidden, chooseSandbox } from "../process/sandbox.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import { PermissionStore } from "../store/permissions.ts";
import type { ThreadStore } from "../store/threads.ts";
import { AgentProcess } from "./agent-process.ts";
import { AcpBackend } from "./backend.ts";
import { acpCommands } from "./commands.ts";
import { AcpPermissions } from "./permissions.ts";
import { AcpTurnStore } from "./store.ts";
import type { TurnEngine } from "../turns/engine.ts";

export { AcpBackend } from "./backend.ts";

export interface AcpDeps {
  db: Db;
  inbox: Inbox;
  threads: ThreadStore;
  sender: MatrixSender;
  displayName: (roomId: string, userId: string) => Promise<string>;
  log: Logger;
  engine: TurnEngine;
  /** The bot's config file, hidden from the agents by the sandbox. */
  configFile?: string | undefined;
}

/** One backend per agent of `acp.agents` (none when the section is absent). */
export function createAcpBackends(config: BotConfig, deps: AcpDeps): AcpBackend[] {
  const turns = new AcpTurnStore(deps.db);
  const store = new PermissionStore(deps.db);
  return Object.entries(config.acp?.agents ?? {}).map(([name, agent]) => {
    const log = deps.log.child({ component: "acp", agent: name });
    const cwd = resolve(agent.cwd ?? config.opencode.workspaceDir);
    const backend = new AcpBackend(
      {
        ...deps, log, turns, name, cwd, prefix: agent.prefix, command: [agent.command, ...agent.args].join(" "),
      },
      acpCommands,
    );
    // The agent is untrusted: the allowlist plus what the operator named, never the bot's secrets;
    // in the sandbox (opencode.sandbox) the bot's database, config file and processes are not there.
    // Agents keep their state in their home (~/.gemini, ~/.claude, XDG dirs), so it stays writable.
    const env = childEnv({ passEnv: agent.env });
    const sandbox = chooseSandbox(config.opencode.sandbox, {
      writable: [cwd, ...(env.HOME ? [env.HOME] : []), ...(config.opencode.projectRoots ?? [])],
      ...botStateHidden(config.database.path, deps.configFile),
    }, { who: `the ACP agent ${name}`, warn: (msg) => log.warn(msg), refuse: (msg) => new ConfigError(msg) });
    const process = new AgentProcess({
      name, command: agent.command, args: agent.args, cwd, log, env, sandbox,
      onUpdate: (n) => backend.onUpdate(n),
      onPermission: (req, signal) => backend.onPermission(req, signal),
      onExit: () => backend.onProcessExit(),
    });
    const permissions = new AcpPermissions({ agentName: name, label: name, prefix: agent.prefix, store, sender: deps.sender, displayName: deps.displayName, log });
    backend.wire(process, permissions);
    return backend;
  });
}
