/**
 * Splits markdown into pieces a homeserver accepts. An edit carries the text four times (body
 * and formatted body, in the event and in m.new_content) and HTML can double it, under a 64 KiB
 * event limit: 8,000 bytes of markdown per message keeps far below it.
 */
export const maxMessageBytes = 8000;

const bytes = (s: string): number => Buffer.byteLength(s, "utf8");

function cutPoint(text: string, limit: number): number {
  // Largest prefix within `limit` bytes, preferring to end at a line break, else between words.
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (bytes(text.slice(0, mid)) <= limit) lo = mid;
    else hi = mid - 1;
  }
  if (lo > 0 && /[\uD800-\uDBFF]/.test(text[lo - 1] ?? "")) lo--; // never split a surrogate pair
  const nl = text.lastIndexOf("\n", lo);
  if (nl > lo / 2) return nl + 1;
  // A word cut in two reads as two wrong words, one at the end of each message.
  const space = Math.max(text.lastIndexOf(" ", lo - 1), text.lastIndexOf("\t", lo - 1));
  return space > lo / 2 ? space + 1 : lo;
}

/** Greedy and stable: as text grows at its end, earlier pieces stay the same. Code fences are closed and reopened across a cut. */
export function splitMarkdown(text: string, limit = maxMessageBytes): string[] {
  const pieces: string[] = [];
  let rest = text;
  const room = limit - 8; // for a fence closed and reopened
  while (bytes(rest) > limit) {
    const at = cutPoint(rest, room);
    let piece = rest.slice(0, at);
    rest = rest.slice(at);
    const fences = piece.split("\n").filter((l) => l.trimStart().startsWith("```")).length;
    if (fences % 2 === 1) {
      piece = `${piece.replace(/\n?$/, "\n")}\`\`\``;
      rest = `\`\`\`\n${rest}`;
    }
    pieces.push(piece.trimEnd());
  }
  pieces.push(rest);
  return pieces;
}
