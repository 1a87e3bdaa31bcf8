import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeEach, test } from "node:test";
import type { Event, Message, Part } from "@opencode-ai/sdk/v2";
import { OpencodeTranslator } from "../../src/opencode/events.ts";
import type { TurnEvent } from "../../src/turns/events.ts";
import { renderTurn } from "../../src/turns/render.ts";
import { TurnState, type SavedState } from "../../src/turns/state.ts";

// OpenCode records a streaming text part as empty until it ends, and its deltas carry only the
// new words. A bot that meets a part in the middle (restarted, or its event stream dropped for a
// moment) must not show the words after the hole as the answer: on the recorded "slow" stream
// (abort.jsonl: "slow1", " slow2", … as deltas) no version may read from the middle.

type Line = Record<string, unknown>;
const rec = readFileSync(join(import.meta.dirname, "../fixtures/opencode/abort.jsonl"), "utf8").trim().split("\n").slice(1).map((l) => JSON.parse(l) as Line);
// The translator keeps the parts it is given and adds deltas to them: each test takes its own copy.
const recorded = rec.filter((l) => !("snapshot" in l)) as unknown as Event[];
let events = structuredClone(recorded);
/** The server's record while the answer streams: the text part is there, empty, not ended. */
const record = rec.find((l) => "snapshot" in l)?.snapshot as Array<{ info: Message; parts: Part[] }>;
const midStreamRecord = (): Array<{ info: Message; parts: Part[] }> => structuredClone(record);
const deltaAt = (word: string): number => events.findIndex((e) => e.type === "message.part.delta" && e.properties.delta.trim() === word);
const textPart = events.find((e) => e.type === "message.part.updated" && e.properties.part.type === "text" && e.properties.part.time !== undefined);
/** The part's end as OpenCode sends it: the whole text, with an end time. */
function partEnd(text: string): Event {
  if (textPart?.type !== "message.part.updated" || textPart.properties.part.type !== "text") throw new Error("fixture without a streamed text part");
  const part = textPart.properties.part;
  return { ...textPart, properties: { ...textPart.properties, part: { ...part, text, time: { start: part.time?.start ?? 0, end: (part.time?.start ?? 0) + 500 } } } } as Event;
}

beforeEach(() => {
  events = structuredClone(recorded);
});

class View {
  readonly state = new TurnState();
  readonly shown: string[] = [];
  push(evs: TurnEvent[]): void {
    let changed = false;
    for (const e of evs) changed = this.state.apply(e) || changed;
    if (changed) this.shown.push(renderTurn(this.state, { final: false, durationMs: 0, working: "⏳" }));
  }
}

test("after a restart mid-answer, the reply keeps what it showed until the part's whole text comes; it never reads from the middle", () => {
  // The first process shows "slow1 slow2", saves, and dies.
  const first = new View();
  const tr1 = new OpencodeTranslator("/tmp/opencode-record/project");
  for (const e of events.slice(0, deltaAt("slow2") + 1)) first.push(tr1.apply(e));
  assert.equal(first.shown.at(-1), "slow1 slow2");
  const saved = JSON.parse(JSON.stringify(first.state.save())) as SavedState;

  // The next one restores it, reads the record (empty text) and gets the deltas from "slow3" on.
  const second = new View();
  second.state.restore(saved);
  const tr2 = new OpencodeTranslator("/tmp/opencode-record/project", undefined, { joinedLate: true });
  second.push(tr2.load(midStreamRecord()));
  for (const e of events.slice(deltaAt("slow3"), deltaAt("slow5") + 1)) second.push(tr2.apply(e));
  second.push(tr2.apply(partEnd("slow1 slow2 slow3 slow4 slow5")));
  const visible = second.shown.length > 0 ? second.shown : ["slow1 slow2"];
  for (const v of visible) assert.ok(v.startsWith("slow1 slow2"), `a version reads from the middle: ${JSON.stringify(second.shown)}`);
  assert.equal(second.shown.at(-1), "slow1 slow2 slow3 slow4 slow5", "the part's end shows the whole text");
});

test("deltas lost in a gap of the event stream are not papered over: the part waits for its whole text", () => {
  const view = new View();
  const tr = new OpencodeTranslator("/tmp/opencode-record/project");
  for (const e of events.slice(0, deltaAt("slow2") + 1)) view.push(tr.apply(e));
  tr.markGap();
  // "slow3" fell into the gap; "slow4" and "slow5" arrive after the reconnect.
  for (const e of events.slice(deltaAt("slow4"), deltaAt("slow5") + 1)) view.push(tr.apply(e));
  assert.deepEqual(view.shown.filter((v) => v !== "⏳"), ["slow1", "slow1 slow2"], "nothing with a hole is shown");
  view.push(tr.apply(partEnd("slow1 slow2 slow3 slow4 slow5")));
  assert.equal(view.shown.at(-1), "slow1 slow2 slow3 slow4 slow5");
});

test("a part the stream saw from its start keeps streaming after the session is reread", () => {
  const view = new View();
  const tr = new OpencodeTranslator("/tmp/opencode-record/project");
  for (const e of events.slice(0, deltaAt("slow2") + 1)) view.push(tr.apply(e));
  // The record has the part empty (still streaming); the stream's own copy is whole and stays.
  view.push(tr.load(midStreamRecord()));
  for (const e of events.slice(deltaAt("slow3"), deltaAt("slow4") + 1)) view.push(tr.apply(e));
  assert.equal(view.shown.at(-1), "slow1 slow2 slow3 slow4");
});

test("a turn joined late still streams the parts that begin after it joined", () => {
  const view = new View();
  const tr = new OpencodeTranslator("/tmp/opencode-record/project", undefined, { joinedLate: true });
  for (const e of events.slice(0, deltaAt("slow3") + 1)) view.push(tr.apply(e));
  assert.equal(view.shown.at(-1), "slow1 slow2 slow3", "the part's start (empty, on the stream) came before its deltas");
});
