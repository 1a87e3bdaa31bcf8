// How a Letta agent gets the bot's MCP tools. Letta 0.16.8 speaks MCP (streamable HTTP, SSE,
// stdio), but refuses an MCP server on a loopback or private address (its SSRF guard,
// letta/helpers/url_validation.py) and has stdio off by default — and the bot's /mcp listens
// on loopback. So each tool is registered as a small Letta Python tool that is itself an MCP
// client: one JSON-RPC `tools/call` POSTed to the bot's /mcp, with the agent's own secret
// (MATRIX_BOT_MCP_TOKEN) as bearer token. Letta runs it in its tool sandbox with the agent's
// secrets as environment. A bot reachable at a public URL can instead be added to Letta as a
// real MCP server (README: "Letta delegates to OpenCode").
import type { LettaApi } from "../letta/api.ts";
import { addSecret, type Logger } from "../log.ts";
import type { McpAgentStore } from "./store.ts";
import { toolSpecs, type ToolName } from "./tools.ts";

export const urlSecret = "MATRIX_BOT_MCP_URL";
export const tokenSecret = "MATRIX_BOT_MCP_TOKEN";
export const toolTag = "matrix-agent-bot";

const py = (s: string): string => JSON.stringify(s); // a JSON string is a valid Python string literal

/** The Python source of one tool: its signature and docstring for Letta, its body an MCP call. */
export function pythonTool(name: ToolName, timeoutSeconds: number): string {
  const spec = toolSpecs[name];
  const args = Object.entries(spec.args) as Array<[string, { description: string; required: boolean }]>;
  const params = args.map(([a, s]) => (s.required ? `${a}: str` : `${a}: str = ""`)).join(", ");
  const doc = [
    spec.description,
    "",
    "Args:",
    ...args.map(([a, s]) => `    ${a} (str): ${s.description}`),
    "",
    "Returns:",
    "    str: OpenCode's answer, as JSON (outcome, finalText, changedFiles, sessionId) or the file's text.",
  ]
    .map((l) => (l ? `    ${l}` : ""))
    .join("\n");
  return `def ${name}(${params}) -> str:
    """
${doc.replace(/"""/g, "'''")}
    """
    import json, os, urllib.error, urllib.request
    arguments = {${args.map(([a]) => `${py(a)}: ${a}`).join(", ")}}
    url = os.environ.get(${py(urlSecret)}, "")
    token = os.environ.get(${py(tokenSecret)}, "")
    if not url or not token:
        raise RuntimeError("This agent has no ${urlSecret} / ${tokenSecret} secret: the Matrix bot has not registered it for OpenCode.")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": ${py(name)}, "arguments": {k: v for k, v in arguments.items() if v not in (None, "")}}}
    request = urllib.request.Request(url, data=json.dumps(call).encode("utf-8"), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Authorization": "Bearer " + token, "MCP-Protocol-Version": "2025-06-18"})
    try:
        with urllib.request.urlopen(request, timeout=${timeoutSeconds}) as response:
            raw = response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        raise RuntimeError("The Matrix bot refused the call (HTTP %d): %s" % (e.code, e.read().decode("utf-8", "replace")[:300]))
    except Exception as e:
        raise RuntimeError("The Matrix bot could not be reached (%s). If it is restarting, OpenCode keeps working and its result will come to you as a message." % e)
    if raw.lstrip().startswith(("event:", "data:")):
        raw = [line[5:].strip() for line in raw.splitlines() if line.startswith("data:")][-1]
    message = json.loads(raw)
    if "error" in message:
        raise RuntimeError("MCP error: %s" % message["error"].get("message"))
    result = message.get("result", {})
    text = "\\n".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")
    if result.get("isError"):
        raise RuntimeError(text)
    return text
`;
}

function jsonSchema(name: ToolName): Record<string, unknown> {
  const spec = toolSpecs[name];
  const args = Object.entries(spec.args) as Array<[string, { description: string; required: boolean }]>;
  return {
    name,
    description: spec.description,
    parameters: {
      type: "object",
      properties: Object.fromEntries(args.map(([a, s]) => [a, { type: "string", description: s.description }])),
      required: args.filter(([, s]) => s.required).map(([a]) => a),
    },
  };
}

export interface RegistrarDeps {
  api: LettaApi;
  agents: McpAgentStore;
  log: Logger;
  /** How long the tool waits for the bot's answer (the bot answers within letta.delegationWaitMs). */
  timeoutSeconds: number;
}

/** Registers the tools with Letta and gives agents their secrets. */
export class LettaToolRegistrar {
  private readonly d: RegistrarDeps;
  private ids: Promise<Map<string, string>> | undefined;

  constructor(deps: RegistrarDeps) {
    this.d = deps;
  }

  /** The tools on the Letta server, created or brought up to date once per process. */
  private tools(): Promise<Map<string, string>> {
    this.ids ??= (async () => {
      const ids = new Map<string, string>();
      for (const name of Object.keys(toolSpecs) as ToolName[]) {
        const id = await this.d.api.upsertTool({ sourceCode: pythonTool(name, this.d.timeoutSeconds), description: toolSpecs[name].description, jsonSchema: jsonSchema(name), tags: [toolTag] });
        ids.set(name, id);
      }
      return ids;
    })().catch((err: unknown) => {
      this.ids = undefined;
      throw err;
    });
    return this.ids;
  }

  /** Gives the agent a new secret and the tools; its old secret stops working. */
  async register(agentId: string, url: string, by: string): Promise<void> {
    const ids = await this.tools();
    const token = this.d.agents.issue(agentId, url, by);
    addSecret(token); // should an error ever quote the request, the log redacts it
    await this.d.api.mergeAgentSecrets(agentId, { [urlSecret]: url, [tokenSecret]: token });
    const have = new Set(await this.d.api.agentToolNames(agentId));
    for (const [name, id] of ids) if (!have.has(name)) await this.d.api.attachTool(agentId, id);
    this.d.log.info({ agentId, tools: [...ids.keys()] }, "Letta agent may delegate to OpenCode");
  }

  /** At start: the tools' code brought up to date, and agents given the bot's current address if it moved. */
  async refresh(url: string): Promise<void> {
    const agents = this.d.agents.all();
    if (agents.length === 0) return;
    await this.tools();
    for (const a of agents) {
      if (a.url === url) continue;
      await this.d.api.mergeAgentSecrets(a.agentId, { [urlSecret]: url });
      this.d.agents.setUrl(a.agentId, url);
    }
  }
}
