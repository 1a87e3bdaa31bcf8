import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { LogService } from "matrix-bot-sdk";
import { bridgeMatrixSdkLogs, createLogger, rateLimitLine } from "../../src/log.ts";

// matrix-bot-sdk logs every 429 at ERROR, though the bot waits them out: through the bridge they
// are info lines with the wait; real errors stay errors.

function bridged(): () => Array<Record<string, unknown>> {
  const chunks: string[] = [];
  const stream = new PassThrough();
  stream.on("data", (c: Buffer) => chunks.push(c.toString("utf8")));
  bridgeMatrixSdkLogs(createLogger("trace", [], stream));
  return () => chunks.join("").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

test("a handled 429 is an info line with the wait asked for; other errors stay errors", () => {
  const lines = bridged();
  // As matrix-bot-sdk's http.ts logs them: the request id, then the (redacted) error body.
  LogService.error("MatrixHttpClient", "(REQ-7)", { errcode: "M_LIMIT_EXCEEDED", error: "Too Many Requests", retry_after_ms: 2345 });
  LogService.warn("MatrixHttpClient", "(REQ-8)", { errcode: "M_LIMIT_EXCEEDED", error: "Too Many Requests" });
  LogService.error("MatrixHttpClient", "(REQ-9)", { errcode: "M_FORBIDDEN", error: "You are not in this room" });
  LogService.error("MatrixClientLite", "Error handling sync", new Error("socket hang up"));
  LogService.error("MatrixHttpClient", "(REQ-10)", { errcode: "M_NOT_FOUND", error: "Account data not found" });
  const [limited, limitedNoWait, forbidden, sync, notFound] = lines();
  assert.equal(limited?.level, 30);
  assert.equal(limited?.retryAfterMs, 2345);
  assert.equal(limited?.msg, "homeserver rate limit (429); handled by waiting");
  assert.match(String(limited?.detail), /\(REQ-7\).*M_LIMIT_EXCEEDED/);
  assert.equal(limitedNoWait?.level, 30);
  assert.equal(limitedNoWait?.retryAfterMs, null);
  assert.equal(forbidden?.level, 50);
  assert.match(String(forbidden?.msg), /M_FORBIDDEN/);
  assert.equal(sync?.level, 50);
  assert.match(String(sync?.msg), /socket hang up/);
  assert.equal(notFound?.level, 20, "the expected 404 at start stays a debug line");
});

test("rateLimitLine reads the wait, and only from a rate-limit line", () => {
  assert.equal(rateLimitLine('(REQ-1) {"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":500}'), 500);
  assert.equal(rateLimitLine('(REQ-1) {"errcode":"M_LIMIT_EXCEEDED"}'), null);
  assert.equal(rateLimitLine('(REQ-1) {"errcode":"M_FORBIDDEN","retry_after_ms":500}'), undefined);
});
