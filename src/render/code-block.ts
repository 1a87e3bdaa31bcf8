/**
 * Text shown verbatim in a fenced code block that the text itself cannot close: the fence is
 * longer than any run of backticks in it. For what an agent's tools printed (untrusted).
 */
export function codeBlock(text: string, lang = ""): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const f = "`".repeat(Math.max(3, longest + 1));
  return `${f}${lang}\n${text}\n${f}`;
}

/** At most `maxLines` lines and `maxChars` characters of the end of a text (a command's output ends with what matters), with a note of what was left out. */
export function tail(text: string, maxLines: number, maxChars: number): string {
  let lines = text.replace(/\s+$/, "").split("\n");
  let cut = 0;
  if (lines.length > maxLines) {
    cut = lines.length - maxLines;
    lines = lines.slice(-maxLines);
  }
  let out = lines.join("\n");
  if (out.length > maxChars) {
    out = `…${out.slice(-maxChars)}`;
    cut = Math.max(cut, 1);
  }
  return cut > 0 && !out.startsWith("…") ? `… (${cut} line${cut === 1 ? "" : "s"} above)\n${out}` : out;
}
