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

// Invisible format characters (zero-width space, direction marks, BOM, word joiner) that
// clients and copy-paste put around words: a message that reads "!oc help" means that.
const invisible = /\p{Cf}/gu;
const isBlank = (ch: string | undefined): boolean => ch !== undefined && /^[\s\p{Cf}]$/u.test(ch);

/** trim() that also drops invisible format characters; a loop, as a regex anchored at the end is quadratic on long blank runs. */
function trimBlank(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isBlank(s[a])) a++;
  while (b > a && isBlank(s[b - 1])) b--;
  return s.slice(a, b);
}

/** The command name under which a backend offers its agent's own `/commands` (`!oc /<name> [args]`). */
export const slashCommand = "/<name>";

/** Splits `<prefix> rest` off a message; undefined when the message is not addressed to the bot. */
export function stripPrefix(body: string, prefix: string): string | undefined {
  const text = trimBlank(body);
  if (!text.toLowerCase().startsWith(prefix.toLowerCase())) return undefined;
  const rest = text.slice(prefix.length);
  if (rest.length > 0 && !isBlank(rest[0])) return undefined; // "!ocfoo" is not ours
  return trimBlank(rest);
}

/**
 * Reads the words after the prefix: a known command word, or a prompt. A single unknown word
 * is treated as a mistyped command (with a suggestion), not sent to the agent: `!oc sesions`
 * should not start a session.
 * `!oc prompt <text>` always sends text as a prompt; `!oc /<name> [args]` runs the agent's own
 * command `<name>` (the args of the returned command start with the name).
 */
export function parseCommand(typed: string, commandWords: readonly string[] = []): Command {
  const rest = trimBlank(typed);
  if (rest.length === 0) return { kind: "help" };
  const match = /^(\S+)\s*([\s\S]*)$/.exec(rest);
  const word = (match?.[1] ?? "").replace(invisible, "").toLowerCase();
  const args = (match?.[2] ?? "").trim();
  if (word === "help" || word === "-h" || word === "--help" || word === "?") return { kind: "help" };
  if (word === "prompt") return args ? { kind: "prompt", text: args } : { kind: "help" };
  if (commandWords.includes(word)) return { kind: "command", name: word, args };
  // `!oc /review main`: one of the agent's own commands, for a backend that offers them.
  const slash = /^\/([\w.:-]+)$/.exec(match?.[1] ?? "");
  if (slash && commandWords.includes(slashCommand)) return { kind: "command", name: slashCommand, args: `${slash[1]} ${args}`.trim() };
  if (args.length === 0 && /^[a-z][a-z-]*$/.test(word) && word.length <= 24) {
    const suggestion = ["help", ...commandWords].find((w) => distance(w, word) <= 2);
    return { kind: "unknown", word, suggestion };
  }
  return { kind: "prompt", text: rest };
}
