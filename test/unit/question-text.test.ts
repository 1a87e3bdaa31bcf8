import { test } from "node:test";
import assert from "node:assert/strict";
import type { QuestionInfo } from "@opencode-ai/sdk/v2";
import { optionOfReaction, parseAnswer, questionMarkdown, reactionCount } from "../../src/opencode/question-text.ts";

const yesNo: QuestionInfo = { question: "Deploy now?", header: "Confirm", options: [{ label: "Yes", description: "Go ahead" }, { label: "No", description: "Stop here" }] };
const words = { asker: "Alice", names: new Map([["@bob:x", "Bob"]]), prefix: "!oc", label: "OpenCode" };

test("number reactions pick options, with or without the variation selector; other keys do not", () => {
  assert.equal(optionOfReaction("1️⃣"), 1);
  assert.equal(optionOfReaction("3\u20E3"), 3);
  assert.equal(optionOfReaction("🔟"), 10);
  assert.equal(optionOfReaction("✅"), undefined);
  assert.equal(optionOfReaction("1"), undefined);
  assert.equal(reactionCount([yesNo, { ...yesNo, options: Array.from({ length: 12 }, (_, i) => ({ label: `o${i}`, description: "" })) }]), 10);
});

test("a typed answer: a number picks an option, a label picks it, other words are the person's own", () => {
  assert.deepEqual(parseAnswer(yesNo, " 2 "), { answer: ["No"] });
  assert.deepEqual(parseAnswer(yesNo, "2️⃣"), { answer: ["No"] });
  assert.deepEqual(parseAnswer(yesNo, "yes"), { answer: ["Yes"] });
  assert.deepEqual(parseAnswer(yesNo, "Only on Fridays"), { answer: ["Only on Fridays"] });
  assert.deepEqual(parseAnswer(yesNo, "3"), { refused: "There is no option 3: pick 1–2, or write your own answer." });
  assert.deepEqual(parseAnswer(yesNo, "1 2"), { refused: "This question takes one option: pick one of 1–2." });
  assert.deepEqual(parseAnswer({ ...yesNo, multiple: true }, "2, 1"), { answer: ["No", "Yes"] });
  assert.deepEqual(parseAnswer({ ...yesNo, custom: false }, "maybe"), { refused: "Pick one of the options by its number (1–2)." });
  assert.deepEqual(parseAnswer({ ...yesNo, options: [] }, "42"), { answer: ["42"] });
});

test("the message: the question, numbered options, and how it ended; agent markdown shows as text", () => {
  const q = { ...yesNo, question: "Run `rm -rf` on **prod**?" };
  const open = questionMarkdown({ questions: [q], answers: [], answeredBy: [], status: "pending" }, words);
  assert.match(open, /^❓ OpenCode asks Alice: Run \\`rm -rf\\` on \\\*\\\*prod\\\*\\\*\?\n\n1️⃣ \*\*Yes\*\* — Go ahead\n2️⃣ \*\*No\*\* — Stop here\n\nReact with an option's number/);
  const done = questionMarkdown({ questions: [yesNo], answers: [["No"]], answeredBy: ["@bob:x"], status: "answered" }, words);
  assert.match(done, /^❓ OpenCode asked Alice: Deploy now\?\n\n.*\n.*\n\n✅ Answered “No” by Bob\.$/);
  const outside = questionMarkdown({ questions: [yesNo], answers: [["Yes"]], answeredBy: [""], status: "answered" }, words);
  assert.match(outside, /✅ Answered outside Matrix: “Yes”\.$/);
  assert.match(questionMarkdown({ questions: [yesNo], answers: [], answeredBy: [], status: "rejected" }, words), /🚫 Dismissed without an answer\.$/);
});

test("several questions: answered in order, each answer under its question", () => {
  const two = [yesNo, { ...yesNo, header: "Team", question: "Tell the team?" }];
  const half = questionMarkdown({ questions: two, answers: [["Yes"]], answeredBy: ["@bob:x"], status: "pending" }, words);
  assert.match(half, /^❓ OpenCode asks Alice 2 questions:\n\n\*\*1\. Confirm\*\* — Deploy now\?\n1️⃣ .*\n2️⃣ .*\n→ \*\*Yes\*\* — Bob\n\n\*\*2\. Team\*\* — Tell the team\?\n1️⃣ .*\n2️⃣ .*\n\nAnswer in order — now question 2 of 2: react/);
});
