import type { AgentBackend } from "./backend.ts";
import type { CommandSpec } from "./types.ts";

/** The command reference shown by `<prefix> help`; the README's command section says the same. */
export function helpText(backend: AgentBackend, all: CommandSpec[] = backend.commands): string {
  const p = backend.prefix;
  const line = (usage: string, summary: string): string => `- \`${usage}\` — ${summary}`;
  const commands = all.map((c) => {
    const where = c.where === "thread" ? " _(in a session thread)_" : c.where === "room" ? " _(top level)_" : "";
    const mod = c.rights === "moderator" ? " _(moderators)_" : c.rights === "admin" ? " _(operators)_" : "";
    return line(`${p} ${c.name}${c.args ? ` ${c.args}` : ""}`, `${c.summary}${where}${mod}`);
  });
  return [
    `**${p} commands**`,
    "",
    line(`${p} <prompt>`, backend.promptSummary),
    line(`${p} prompt <text>`, "the same, for a one-word prompt"),
    ...commands,
    line(`${p} help`, "this list"),
    "",
    "Inside a session thread, write without a prefix: every message is a follow-up to the same session.",
  ].join("\n");
}
