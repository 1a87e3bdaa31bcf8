/** The command reference shown by `!oc help`; the README's command section says the same. */
export function helpText(prefix: string): string {
  return [
    `**OpenCode from Matrix** — commands start with \`${prefix}\`:`,
    "",
    `- \`${prefix} <prompt>\` — start a new OpenCode session; the answer streams into a thread on your message`,
    `- \`${prefix} prompt <text>\` — the same, for a one-word prompt`,
    `- \`${prefix} help\` — this list`,
    "",
    "Inside a session thread, write without a prefix: every message is a follow-up to the same session.",
  ].join("\n");
}
