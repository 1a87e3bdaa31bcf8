/** What a message asks of the bot, before anyone checks whether it may. */
export type Command =
  | { kind: "help" }
  | { kind: "prompt"; text: string }
  | { kind: "command"; name: string; args: string }
  | { kind: "unknown"; word: string; suggestion: string | undefined };

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

/** Splits `<prefix> rest` off a message; undefined when the message is not addressed to the bot. */
export function stripPrefix(body: string, prefix: string): string | undefined {
  const text = body.trimStart();
  if (!text.toLowerCase().startsWith(prefix.toLowerCase())) return undefined;
  const rest = text.slice(prefix.length);
  if (rest.length > 0 && !/^\s/.test(rest)) return undefined; // "!ocfoo" is not ours
  return rest.trim();
}

/**
 * Reads the words after the prefix: a known command word, or a prompt. A single unknown word
 * is treated as a mistyped command (with a suggestion), not sent to the agent: `!oc sesions`
 * should not start a session.
 * `!oc prompt <text>` always sends text as a prompt.
 */
export function parseCommand(rest: string, commandWords: readonly string[] = []): Command {
  if (rest.length === 0) return { kind: "help" };
  const match = /^(\S+)\s*([\s\S]*)$/.exec(rest);
  const word = (match?.[1] ?? "").toLowerCase();
  const args = (match?.[2] ?? "").trim();
  if (word === "help" || word === "-h" || word === "--help" || word === "?") return { kind: "help" };
  if (word === "prompt") return args ? { kind: "prompt", text: args } : { kind: "help" };
  if (commandWords.includes(word)) return { kind: "command", name: word, args };
  if (args.length === 0 && /^[a-z][a-z-]*$/.test(word) && word.length <= 24) {
    const suggestion = ["help", ...commandWords].find((w) => distance(w, word) <= 2);
    return { kind: "unknown", word, suggestion };
  }
  return { kind: "prompt", text: rest };
}
