import { resolve } from "node:path";
import type { BotConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { childEnv } from "../process/child-env.ts";
import type { Db } from "../store/db.ts";
import { PermissionStore } from "../store/permissions.ts";
import type { ThreadStore } from "../store/threads.ts";
import { AgentProcess } from "./agent-process.ts";
import { AcpBackend } from "./backend.ts";
import { acpCommands } from "./commands.ts";
import { AcpPermissions } from "./permissions.ts";
import { AcpTurnStore } from "./store.ts";

export { AcpBackend } from "./backend.ts";

export interface AcpDeps {
  db: Db;
  threads: ThreadStore;
  sender: MatrixSender;
  displayName: (roomId: string, userId: string) => Promise<string>;
  log: Logger;
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
        editWindowMs: config.rendering.editWindowMs,
        completionNoticeAfterMs: config.rendering.completionNoticeAfterMs,
      },
      acpCommands,
    );
    const process = new AgentProcess({
      name, command: agent.command, args: agent.args, cwd, log,
      // The agent is untrusted: the allowlist plus what the operator named, never the bot's secrets.
      env: childEnv({ passEnv: agent.env }),
      onUpdate: (n) => backend.onUpdate(n),
      onPermission: (req, signal) => backend.onPermission(req, signal),
      onExit: () => backend.onProcessExit(),
    });
    const permissions = new AcpPermissions({ agentName: name, label: name, prefix: agent.prefix, store, sender: deps.sender, displayName: deps.displayName, log });
    backend.wire(process, permissions);
    return backend;
  });
}
