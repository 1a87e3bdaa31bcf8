// Letta agents delegate coding tasks to OpenCode through the bot: an MCP endpoint (/mcp on the
// bot's HTTP port) whose tools run OpenCode turns in the Letta thread that asked. app.ts builds
// it when letta.delegateToOpencode is on and plugs it into the Letta backend's hooks and the
// HTTP server; letta/ and opencode/ know nothing of this folder.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { BotConfig } from "../config/schema.ts";
import type { LettaBackend } from "../letta/backend.ts";
import type { Logger } from "../log.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { OpencodeBackend } from "../opencode/backend.ts";
import { Delegator } from "../opencode/delegate.ts";
import type { Db } from "../store/db.ts";
import { PermissionStore } from "../store/permissions.ts";
import type { ThreadStore } from "../store/threads.ts";
import { Binder } from "./binding.ts";
import { ResultDelivery } from "./delivery.ts";
import { mcpHandler } from "./http.ts";
import { LettaToolRegistrar } from "./letta-tools.ts";
import { DelegatedPermissions } from "./permissions.ts";
import { McpAgentStore, McpRoomStore } from "./store.ts";
import { toolServer } from "./tools.ts";

export interface DelegationDeps {
  db: Db;
  letta: LettaBackend;
  opencode: OpencodeBackend;
  threads: ThreadStore;
  sender: MatrixSender;
  names: DisplayNames;
  log: Logger;
  botUserId: string;
}

export interface Delegation {
  /** POST /mcp. */
  http(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Once the HTTP port is known: the endpoint URL, and the agents' secrets brought up to date. */
  start(httpPort: number): Promise<void>;
  /** After the backends' own reconcile: delegated work of the last run followed again. */
  reconcile(): Promise<void>;
  /** Before the backends stop: waiting tool calls answer "still running", so no Letta turn hangs on them. */
  stop(): void;
}

/** The delegation part when letta.delegateToOpencode is on and Letta is configured; else undefined. */
export function createDelegation(config: BotConfig, d: DelegationDeps): Delegation {
  const log = d.log.child({ component: "mcp" });
  const agents = new McpAgentStore(d.db);
  const rooms = new McpRoomStore(d.db);
  const defaultOn = config.letta.delegateToOpencode;
  const binder = new Binder({ turns: d.letta.d.turns, threads: d.threads, rooms, defaultOn });
  const delegator = new Delegator({ backend: d.opencode, db: d.db, sender: d.sender, names: d.names, log, waitMs: config.letta.delegationWaitMs });
  const permissions = new DelegatedPermissions({
    opencode: d.opencode, delegator, store: new PermissionStore(d.db), threads: d.threads, sender: d.sender, names: d.names, log, prefix: d.letta.prefix,
  });
  const delivery = new ResultDelivery({ letta: d.letta, delegator, threads: d.threads, sender: d.sender, log, botUserId: d.botUserId });
  const registrar = new LettaToolRegistrar({ api: d.letta.api, agents, log, timeoutSeconds: Math.ceil(config.letta.delegationWaitMs / 1000) + 60 });
  // Known once the HTTP server listens (its port may be chosen then); commands may run before.
  let setUrl: (u: string) => void = () => undefined;
  const urlReady = new Promise<string>((resolve) => (setUrl = resolve));

  const http = mcpHandler({
    agentOf: (token) => agents.agentOf(token),
    serverFor: (agentId) => toolServer({ agentId, bind: (a) => binder.bind(a), delegator, log }),
    log,
  });

  // Plugged in at once: a reaction on a request asked before a restart may come with the first sync.
  Object.assign(d.letta.hooks, {
    onReaction: (roomId: string, eventId: string, key: string, sender: string) => permissions.onReaction(roomId, eventId, key, sender),
    answerPermission: (roomId: string, root: string, reply: "once" | "always" | "reject", by: string, reason?: string) => permissions.answerInThread(roomId, root, reply, by, reason),
    abortThread: async (roomId: string, root: string) => {
      const stopped = await delegator.abortThread(roomId, root);
    await permissions.expireInThread(roomId, root);
      return stopped.length > 0 ? `⏹️ Stopped the OpenCode work delegated here (${stopped.map((s) => `\`${s}\``).join(", ")}).` : undefined;
    },
    agentBound: async (agent: { id: string; name: string }, roomId: string, by: string) => {
      if (!binder.roomAllows(roomId)) return undefined;
      await registrar.register(agent.id, await urlReady, by);
      return `🛠️ It can hand coding tasks to OpenCode; their work streams into its threads here (\`${d.letta.prefix} delegate off\` stops that).`;
    },
    delegation: async (roomId: string, change: { on: boolean; by: string } | undefined) => {
      if (change) rooms.set(roomId, change.on, change.by);
      const on = binder.roomAllows(roomId);
      const state = on ? "✅ This room's Letta agent may hand coding tasks to OpenCode; the work streams into its thread." : "⛔ This room's Letta agent may not hand tasks to OpenCode.";
      if (!change || !on) return state;
      // Turned on: the room's agent gets the tools now, not only at the next `use`.
      const agent = d.letta.d.rooms.get(roomId);
      if (agent) await registrar.register(agent.agentId, await urlReady, change.by);
      return state;
    },
  } satisfies LettaBackend["hooks"]);

  return {
    http,
    async start(httpPort) {
      const host = config.http.host === "0.0.0.0" || config.http.host === "::" || config.http.host === "" ? "127.0.0.1" : config.http.host;
      const url = config.letta.mcpUrl ?? `http://${host.includes(":") ? `[${host}]` : host}:${httpPort}/mcp`;
      setUrl(url);
      await registrar.refresh(url).catch((err: unknown) => log.warn({ err }, "could not bring the agents' OpenCode tools up to date"));
      log.info({ url }, "Letta agents may delegate to OpenCode");
    },
    async reconcile() {
      await permissions.reconcile().catch((err: unknown) => log.warn({ err }, "reconciling delegated permission requests failed"));
      delegator.reconcile();
      delivery.reconcile();
    },
    stop() {
      delegator.stop();
      delivery.stop();
    },
  };
}
