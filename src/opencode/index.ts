// Builds the OpenCode backend: one server unit per configured server (server-unit.ts: the
// embedded server or the URL, its connection and event stream, turn runner, permission and
// question desks, lifecycle), and the one `!oc` backend that routes each room and thread to its
// server. app.ts knows none of these parts.
import { resolve } from "node:path";
import { primaryServerName } from "../config/opencode-servers.ts";
import type { BotConfig } from "../config/schema.ts";
import { OpencodeBackend } from "./backend.ts";
import { opencodeCommands } from "./commands/index.ts";
import { OpencodeServers } from "./servers.ts";
import { createServerUnit, type OpencodeDeps, type ServerSpec, type ServerUnit } from "./server-unit.ts";

export { OpencodeBackend } from "./backend.ts";
export type { OpencodeDeps } from "./server-unit.ts";

/** The servers of the config: `default` (opencode.serverUrl, or the embedded one) first, then opencode.servers. */
export function serverSpecs(c: BotConfig["opencode"]): { specs: ServerSpec[]; roomDefault: string } {
  const named = Object.keys(c.servers ?? {}).length > 0;
  const workspaceDir = resolve(c.workspaceDir);
  const specs: ServerSpec[] = [
    {
      name: primaryServerName, url: c.serverUrl, username: c.username, password: c.password, workspaceDir,
      projectRoots: (c.projectRoots ?? [workspaceDir]).map((r) => resolve(r)), primary: true, named,
    },
  ];
  let roomDefault = primaryServerName;
  for (const [name, s] of Object.entries(c.servers ?? {})) {
    // Paths on another machine: taken as written (absolute), not resolved against the bot's own files.
    const roots = s.projectRoots ?? [s.workspaceDir ?? workspaceDir];
    specs.push({ name, url: s.url, username: s.username, password: s.password, workspaceDir: s.workspaceDir ?? roots[0] ?? workspaceDir, projectRoots: roots, primary: false, named });
    if (s.default) roomDefault = name;
  }
  return { specs, roomDefault };
}

/** Starts the embedded server if no URL is configured (or checks the configured ones), and wires the rest. */
export async function createOpencodeBackend(config: BotConfig, d: OpencodeDeps): Promise<OpencodeBackend> {
  const { specs, roomDefault } = serverSpecs(config.opencode);
  const units: ServerUnit[] = [];
  // `default` first: a bad setting of its own stops the start (as with one server); the others never do.
  for (const spec of specs) units.push(await createServerUnit(config, spec, d));
  const servers = new OpencodeServers(units, d.rooms, config.commands.prefix, roomDefault);
  d.metrics.observe({ opencodeServers: () => units.map((u) => ({ server: u.name, up: u.conn.state === "connected", activeTurns: u.runner.activeCount })) });
  if (servers.several) d.log.info({ servers: specs.map((s) => ({ name: s.name, url: s.url ?? "embedded" })), roomDefault }, "OpenCode servers");
  return new OpencodeBackend(
    {
      prefix: config.commands.prefix, servers, threads: d.threads, rooms: d.rooms, sender: d.sender, client: d.client,
      names: d.names, log: d.log, db: d.db, settings: d.settings,
    },
    opencodeCommands,
  );
}
