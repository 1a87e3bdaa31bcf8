import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { LogService } from "matrix-bot-sdk";
import { addSecret, bridgeMatrixSdkLogs, createLogger } from "../../src/log.ts";

// Secrets learnt after the logger exists (a login token, the embedded server's password) and
// values under secret-looking keys never reach a log line, whatever part of the line holds them.

function capture(): { log: ReturnType<typeof createLogger>; text: () => string } {
  const chunks: string[] = [];
  const stream = new PassThrough();
  stream.on("data", (c: Buffer) => chunks.push(c.toString("utf8")));
  return { log: createLogger("trace", [], stream), text: () => chunks.join("") };
}

test("a secret added after the logger was made is scrubbed from messages, objects, errors, bindings and the SDK bridge", () => {
  const { log, text } = capture();
  bridgeMatrixSdkLogs(log);
  const token = `syt_${randomBytes(16).toString("hex")}`;
  const password = `pa"ss\\${randomBytes(8).toString("hex")}`;
  addSecret(token);
  addSecret(password);
  addSecret("abc");
  log.info(`logged in with ${token}`);
  log.warn({ detail: `proxy said: Authorization: Bearer ${token}`, nested: { list: [password] } }, "request failed");
  log.child({ url: `https://hs/?access_token=${token}` }).error({ err: new Error(`HTTP 500 for ${token}`) }, "boom");
  LogService.error("MatrixHttpClient", "(REQ-1)", { error: `echo ${token}`.repeat(200) });
  log.info("abc stays readable");
  const out = text();
  assert.ok(out.includes("[redacted]"));
  assert.ok(!out.includes(token) && !out.includes(token.slice(-16)), out);
  assert.ok(!out.includes(JSON.stringify(password).slice(1, -1)) && !out.includes(password.slice(-16)), out);
  assert.ok(out.includes('"msg":"logged in with [redacted]"'));
  assert.ok(out.includes('"msg":"abc stays readable"'), "a value shorter than 6 characters is not a secret to scrub");
});

test("values under keys that name secrets are redacted, in the spellings clients use", () => {
  const { log, text } = capture();
  log.info({
    apiToken: "v1",
    letta: { apiToken: "v2", api_key: "v3" },
    headers: { Authorization: "Bearer v4", authorization: "Bearer v5", "x-api-key": "v6" },
    config: { matrix: { password: "v7", accessToken: "v8" } },
    token: "v9",
    apiKey: "v10",
  }, "config");
  const line = JSON.parse(text()) as Record<string, unknown>;
  assert.deepEqual(
    { apiToken: line.apiToken, letta: line.letta, headers: line.headers, config: line.config, token: line.token, apiKey: line.apiKey },
    {
      apiToken: "[redacted]",
      letta: { apiToken: "[redacted]", api_key: "[redacted]" },
      headers: { Authorization: "[redacted]", authorization: "[redacted]", "x-api-key": "[redacted]" },
      config: { matrix: { password: "[redacted]", accessToken: "[redacted]" } },
      token: "[redacted]",
      apiKey: "[redacted]",
    },
  );
});
