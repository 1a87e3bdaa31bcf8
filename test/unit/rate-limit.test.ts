import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { LogService, MatrixClient } from "matrix-bot-sdk";
import { createLogger } from "../../src/log.ts";
import { FetchClient, HomeserverError } from "../../src/matrix/fetch-client.ts";
import { RateLimitedError } from "../../src/matrix/rate-limit.ts";
import { MatrixSender } from "../../src/matrix/sender.ts";

// The one 429 handling, against a real homeserver stand-in on loopback: once through the CLI's
// fetch client, once through the bot's sender on matrix-bot-sdk. Request counts, not times.

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

let server: Server;
let baseUrl: string;
/** What the server answers next; when empty, 200 with an event id. */
let script: Answer[] = [];
let requests: string[] = [];

const limited = (retryAfterMs: number): Answer => ({ status: 429, body: { errcode: "M_LIMIT_EXCEEDED", error: "Too many requests", retry_after_ms: retryAfterMs } });
const forbidden: Answer = { status: 403, body: { errcode: "M_FORBIDDEN", error: "not in room" } };

function reset(answers: Answer[]): void {
  script = answers;
  requests = [];
}

before(async () => {
  LogService.setLogger({ info() {}, warn() {}, error() {}, debug() {}, trace() {} });
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      requests.push(`${req.method} ${req.url}`);
      const answer = script.shift() ?? { status: 200, body: { event_id: `$ev${requests.length}`, room_id: "!room:hs" } };
      res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const content = { msgtype: "m.text", body: "hi" };

test("CLI client: a 429 is waited out and the same request sent again", async () => {
  reset([limited(20)]);
  const id = await new FetchClient(baseUrl, "tok").sendMessage("!room:hs", "txn1", content);
  assert.equal(id, "$ev2");
  assert.equal(requests.length, 2);
  assert.equal(requests[0], requests[1], "the retry reuses the transaction id");
});

test("CLI client: a Retry-After header (no retry_after_ms) is honoured as well", async () => {
  reset([{ status: 429, body: { errcode: "M_LIMIT_EXCEEDED" }, headers: { "retry-after": "0" } }]);
  assert.equal(await new FetchClient(baseUrl, "tok").resolveRoom("#a:hs"), "!room:hs");
  assert.equal(requests.length, 2);
});

test("CLI client: gives up after its bounded retries, with the homeserver's answer", async () => {
  reset([limited(1), limited(1), limited(1), limited(1)]);
  await assert.rejects(new FetchClient(baseUrl, "tok", { maxRetries: 2 }).sendMessage("!room:hs", "txn2", content), (e: Error) => {
    assert.ok(e instanceof HomeserverError);
    assert.equal(e.statusCode, 429);
    return true;
  });
  assert.equal(requests.length, 3);
});

test("CLI client: an error other than 429 is not retried", async () => {
  reset([forbidden]);
  await assert.rejects(new FetchClient(baseUrl, "tok").sendMessage("!room:hs", "txn3", content), /HTTP 403 M_FORBIDDEN not in room/);
  assert.equal(requests.length, 1);
});

function botSender(): MatrixSender {
  return new MatrixSender(new MatrixClient(baseUrl, "tok"), createLogger("silent"));
}

test("bot sender: a 429 is waited out; with a transaction id the retry repeats it", async () => {
  reset([limited(20)]);
  const sender = botSender();
  assert.equal(await sender.send("!room:hs", content, { txnId: "sched.1" }), "$ev2");
  assert.equal(requests.length, 2);
  assert.match(requests[1] ?? "", /\/send\/m\.room\.message\/sched\.1$/);
  assert.deepEqual(sender.counters, { requests: 2, rateLimited: 1, edits: 0 });
});

test("bot sender: a 429 holds back every later send of the account, without asking the server", async () => {
  reset([limited(60_000)]);
  const sender = botSender();
  await assert.rejects(sender.send("!room:hs", content, { retry: false }), (e: Error) => e instanceof RateLimitedError && !e.local);
  await assert.rejects(sender.send("!other:hs", content, { retry: false }), (e: Error) => e instanceof RateLimitedError && e.local);
  assert.equal(requests.length, 1);
});

test("bot sender: an error other than 429 is not retried", async () => {
  reset([forbidden]);
  const sender = botSender();
  await assert.rejects(sender.send("!room:hs", content), /M_FORBIDDEN/);
  assert.equal(requests.length, 1);
  assert.equal(sender.counters.rateLimited, 0);
});
