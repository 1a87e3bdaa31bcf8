import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { addSecret, createLogger } from "../../src/log.ts";

// On a terminal the log is readable lines instead of JSON; the secrets go all the same, since the
// scrubbing happens on the JSON line before the pretty printer reads it.

test("pretty lines: level and message readable, no JSON envelope, secrets scrubbed", async () => {
  const chunks: string[] = [];
  const stream = new PassThrough();
  stream.on("data", (c: Buffer) => chunks.push(c.toString("utf8")));
  const log = createLogger("info", [], stream, "pretty");
  const token = `syt_${randomBytes(16).toString("hex")}`;
  addSecret(token);
  log.info({ url: "http://127.0.0.1:4096" }, "started embedded OpenCode server");
  log.warn({ detail: `Authorization: Bearer ${token}`, password: "hunter2-hunter2" }, `request with ${token} failed`);
  log.flush();
  await new Promise((r) => setImmediate(r));
  const out = chunks.join("");
  const lines = out.trimEnd().split("\n");
  assert.equal(lines.length, 2, out);
  assert.match(lines[0] ?? "", /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: started embedded OpenCode server \{"url":"http:\/\/127\.0\.0\.1:4096"\}$/);
  assert.match(lines[1] ?? "", /^\[[\d:.]+\] WARN: request with \[redacted\] failed /);
  assert.ok(!out.includes(token) && !out.includes("hunter2"), out);
  // Colours only on the real terminal, never into a stream.
  assert.ok(!out.includes("\u001b["), "no colour codes");
});
