// The scripted model answers `!oc long N` with "word1 word2 … wordN": what a complete reply
// must read, and how much of the answer a body shows.

export const expectedWords = (n: number): string => Array.from({ length: n }, (_, i) => `word${i + 1}`).join(" ");

export const wordCount = (body: string): number => body.match(/\bword\d+\b/g)?.length ?? 0;
