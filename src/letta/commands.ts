import { approvalCommands } from "../commands/approvals.ts";
import { UsageError, type CommandContext, type CommandSpec } from "../commands/types.ts";
import { describeLettaError, type AgentInfo } from "./api.ts";
import type { LettaBackend } from "./backend.ts";

const code = (s: string): string => `\`${s.replace(/`/g, "'")}\``;

/** `!letta agents`, `use`, `new`, `status`, `abort`, `allow`/`deny` (tool approvals and delegated permissions), `delegate`; `help` and prompts are the router's. */
export function lettaCommands(letta: LettaBackend): CommandSpec[] {
  const p = letta.prefix;
  const api = (): LettaBackend["api"] => letta.api;
  const failed = (err: unknown): Error => new Error(describeLettaError(err, api().baseUrl));

  const usedElsewhere = (agentId: string, roomId: string): boolean =>
    [...letta.d.rooms.roomsWith(agentId), ...letta.d.threads.bySession("letta", agentId).map((t) => t.roomId)].some((r) => r !== roomId);

  /** An agent made or picked here gets the tools to delegate to OpenCode, if this room wants them: one more line for the answer. */
  const bound = async (agent: AgentInfo, ctx: CommandContext): Promise<string> => {
    const line = await letta.hooks.agentBound?.(agent, ctx.msg.roomId, ctx.msg.sender).catch((err: unknown) => `⚠️ Could not give it the OpenCode tools: ${describeLettaError(err, api().baseUrl)}`);
    return line ? `\n${line}` : "";
  };

  const agents: CommandSpec = {
    name: "agents",
    summary: "lists the agents on the Letta server",
    where: "any",
    async run(ctx) {
      let list: AgentInfo[];
      try {
        list = await api().listAgents();
      } catch (err) {
        throw failed(err);
      }
      if (list.length === 0) {
        await ctx.reply(`No agents on the Letta server yet. Create one with \`${p} new <name>\`.`);
        return;
      }
      const bound = letta.d.rooms.get(ctx.msg.roomId)?.agentId;
      const lines = list.map((a) => `- **${a.name}** · ${code(a.id)} · ${a.model}${a.id === bound ? " · ← this room" : ""}`);
      await ctx.reply([`**Letta agents** (${list.length})`, "", ...lines, "", `Pick one for this room with \`${p} use <name or id>\`.`].join("\n"));
    },
  };

  const use: CommandSpec = {
    name: "use",
    args: "<name or id> [share]",
    summary: "makes this room talk to that agent (one that talks to another room: operators only, with `share`)",
    where: "room",
    rights: "moderator",
    async run(ctx) {
      // An agent remembers what it was told: one that talks to another room is that room's.
      const share = /\s+share$/i.test(ctx.args.trim());
      const ref = ctx.args.trim().replace(/\s+share$/i, "");
      if (!ref) throw new UsageError("Name the agent.");
      if (share && !ctx.senderIsAdmin) {
        await ctx.reply(`\`${p} use <name or id> share\` is for the bot's operators (access.admins).`);
        return;
      }
      let found: AgentInfo[];
      try {
        found = await api().findAgents(ref);
      } catch (err) {
        throw failed(err);
      }
      if (found.length === 0) {
        await ctx.reply(`No Letta agent named ${code(ref)}; see \`${p} agents\`.`);
        return;
      }
      if (found.length > 1) {
        await ctx.reply(`Several Letta agents are named ${code(ref)}; use the id: ${found.map((a) => code(a.id)).join(", ")}.`);
        return;
      }
      const agent = found[0] as AgentInfo;
      if (!share && usedElsewhere(agent.id, ctx.msg.roomId)) {
        await ctx.reply(
          `⛔ Letta agent **${agent.name}** already talks to another room and remembers what it was told there, so this room cannot pick it. ` +
            `The bot's operators (access.admins) can create one for this room (\`${p} new <name>\`) or share this one (\`${p} use ${ref} share\`).`,
        );
        return;
      }
      letta.d.rooms.bind(ctx.msg.roomId, agent.id, agent.name, ctx.msg.sender);
      const extra = await bound(agent, ctx);
      await ctx.reply(`This room now talks to Letta agent **${agent.name}** (${code(agent.id)}, ${agent.model}). Write \`${p} <message>\` to start a thread.${extra}`);
    },
  };

  const create: CommandSpec = {
    name: "new",
    args: "<name>",
    summary: "creates an agent with the configured model, on the Letta server every room shares",
    where: "room",
    rights: "admin",
    async run(ctx) {
      const name = ctx.args.trim();
      if (!name) throw new UsageError("Name the new agent.");
      if (!/^[\w.-]{1,64}$/u.test(name)) throw new UsageError("The name must be one word of letters, digits, `-`, `_` or `.`.");
      const model = letta.d.model;
      if (!model) {
        await ctx.reply("No model is configured for new agents: set `letta.model` (LETTA_MODEL) in the bot's configuration.");
        return;
      }
      let agent: AgentInfo;
      try {
        const existing = await api().agentsNamed(name);
        if (existing[0]) {
          await ctx.reply(`An agent named **${name}** already exists (${code(existing[0].id)}); pick it with \`${p} use ${name}\`.`);
          return;
        }
        agent = await api().createAgent(name, model, letta.d.embedding);
      } catch (err) {
        throw failed(err);
      }
      const extra = await bound(agent, ctx);
      await ctx.reply(`Created Letta agent **${agent.name}** (${code(agent.id)}, ${agent.model}). Pick it for this room with \`${p} use ${agent.name}\`.${extra}`);
    },
  };

  const status: CommandSpec = {
    name: "status",
    summary: "shows the room's agent and whether the Letta server is up",
    where: "any",
    async run(ctx: CommandContext) {
      const lines: string[] = [];
      try {
        const h = await api().health();
        lines.push(`**Letta** ${api().baseUrl} — ✅ ${h.status}, version ${h.version} (${h.ms} ms)`);
      } catch (err) {
        lines.push(`**Letta** ${api().baseUrl} — ❌ ${describeLettaError(err, api().baseUrl)}`);
      }
      const bound = letta.d.rooms.get(ctx.msg.roomId);
      if (bound) lines.push(`Room agent: **${bound.agentName}** (${code(bound.agentId)}), chosen by ${bound.boundBy}`);
      else if (letta.d.defaultAgent) lines.push(`Room agent: none chosen; the default ${code(letta.d.defaultAgent)} answers (letta.defaultAgent)`);
      else lines.push(`Room agent: none. ${letta.hint()}`);
      const agentId = ctx.thread?.sessionId ?? bound?.agentId;
      if (ctx.thread) lines.push(`This thread: **${ctx.thread.agent ?? ctx.thread.sessionId}** (${code(ctx.thread.sessionId)})`);
      if (agentId) {
        const load = letta.load(agentId);
        if (load.busy) lines.push(`Answering now${load.queued ? `, ${load.queued} waiting` : ""}.`);
      }
      lines.push(`New agents use model ${letta.d.model ? code(letta.d.model) : "— (set letta.model)"}.`);
      await ctx.reply(lines.join("\n"));
    },
  };

  const abort: CommandSpec = {
    name: "abort",
    summary: "stops the agent's answer in this thread and the OpenCode work it delegated here",
    where: "thread",
    async run(ctx) {
      const t = ctx.thread as NonNullable<CommandContext["thread"]>;
      const lines: string[] = [];
      const delegated = await letta.hooks.abortThread?.(ctx.msg.roomId, t.rootEventId, ctx.msg.sender);
      if (delegated) lines.push(delegated);
      // Only a run answering in this thread: a shared agent may be answering another room.
      if (letta.d.turns.running().some((r) => r.agentId === t.sessionId && r.roomId === ctx.msg.roomId && r.rootEventId === t.rootEventId)) {
        try {
          await api().cancelRuns(t.sessionId);
          lines.push("⏹️ Letta was asked to cancel the agent's run.");
        } catch (err) {
          lines.push(`⚠️ Letta did not cancel the agent's run: ${describeLettaError(err, api().baseUrl)}`);
        }
      }
      // A run stopped for approval is over on Letta's side; the agent waits for the answer.
      if (letta.approvals.store.pendingInThread(ctx.msg.roomId, t.rootEventId)) lines.push(`⏸️ The agent waits for approval of a tool call here: \`${p} deny [reason]\` answers it.`);
      await ctx.reply(lines.length > 0 ? lines.join("\n") : "Nothing is running in this thread.");
    },
  };

  // The agent's own approval request first (it holds the agent), then OpenCode work it delegated here.
  const approvals = approvalCommands(async (ctx, reply, reason) => {
    const t = ctx.thread as NonNullable<CommandContext["thread"]>;
    const answered =
      (await letta.approvals.answerInThread(ctx.msg.roomId, t.rootEventId, reply, ctx.msg.sender, reason)) ??
      (await letta.hooks.answerPermission?.(ctx.msg.roomId, t.rootEventId, reply, ctx.msg.sender, reason));
    await ctx.reply(answered ?? "No permission request is pending in this thread.");
  }, "deny the pending request in this thread: the agent's tool approval, or delegated OpenCode work's permission");

  const delegate: CommandSpec = {
    name: "delegate",
    args: "[on|off]",
    summary: "whether this room's agent may hand coding tasks to OpenCode (shown, or set by moderators)",
    where: "room",
    rights: "moderator",
    async run(ctx) {
      const arg = ctx.args.trim().toLowerCase();
      if (arg !== "" && arg !== "on" && arg !== "off") throw new UsageError(`\`${ctx.args.slice(0, 40)}\` is neither \`on\` nor \`off\`.`);
      if (!letta.hooks.delegation) {
        await ctx.reply("Delegation to OpenCode is not enabled for this bot (letta.delegateToOpencode).");
        return;
      }
      await ctx.reply(await letta.hooks.delegation(ctx.msg.roomId, arg === "" ? undefined : { on: arg === "on", by: ctx.msg.sender }));
    },
  };

  return [agents, use, create, status, abort, ...approvals, delegate];
}
