import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { LogService, MemoryStorageProvider } from "matrix-bot-sdk";
import { DurableMatrixClient, HomeserverTimeoutError } from "../../src/matrix/bot-client.ts";
import { FetchClient, HomeserverTimeout } from "../../src/matrix/fetch-client.ts";
import { OpencodeTimeoutError, isLongLived, timedFetch } from "../../src/opencode/timed-fetch.ts";

// Every call to OpenCode and the homeserver outside the long-lived streams ends in time, against
// a stand-in on loopback that accepts connections and never answers (or sends headers, then hangs).

let server: Server;
let base: string;
const open = new Set<ServerResponse>();

before(async () => {
  LogService.setLogger({ info() {}, warn() {}, error() {}, debug() {}, trace() {} });
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    open.add(res);
    res.on("close", () => open.delete(res));
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path === "/ok") {
      res.writeHead(200, { "content-type": "application/json" }).end('{"fine":true}');
    } else if (path === "/empty") {
      res.writeHead(204).end();
    } else if (path === "/headers-then-hang") {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"partial":');
    } else if (path.endsWith("/event")) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"payload":{"type":"server.connected","properties":{}}}\n\n');
    }
    // Anything else: accepted, never answered.
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const res of open) res.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function timed<T>(p: Promise<T>): Promise<{ ms: number; result?: T; err?: unknown }> {
  const t0 = performance.now();
  try {
    const result = await p;
    return { ms: performance.now() - t0, result };
  } catch (err) {
    return { ms: performance.now() - t0, err };
  }
}

test("timedFetch: a hung OpenCode call fails within the limit, in words; answers pass through whole", async () => {
  const f = timedFetch(300);
  const hung = await timed(f(new Request(`${base}/session/status`)));
  assert.ok(hung.err instanceof OpencodeTimeoutError, String(hung.err));
  assert.equal((hung.err as Error).message, "OpenCode did not answer within 300 ms (GET /session/status)");
  assert.ok(hung.ms >= 280 && hung.ms < 1500, `took ${hung.ms} ms`);

  const body = await timed(f(new Request(`${base}/headers-then-hang`)));
  assert.ok(body.err instanceof OpencodeTimeoutError, "a body that never ends is cut too");

  const ok = await f(new Request(`${base}/ok`));
  assert.deepEqual(await ok.json(), { fine: true });
  assert.equal((await f(`${base}/empty`)).status, 204);

  // The caller's own abort is not reported as a timeout.
  const ac = new AbortController();
  const mine = timed(f(new Request(`${base}/session`, { signal: ac.signal })));
  setTimeout(() => ac.abort(), 50);
  const aborted = await mine;
  assert.ok(!(aborted.err instanceof OpencodeTimeoutError) && aborted.err !== undefined);
  assert.ok(aborted.ms < 280);
});

test("the event stream and the calls answered at the end of a turn are not cut", async () => {
  assert.ok(isLongLived(new Request(`${base}/global/event`)));
  assert.ok(isLongLived(new Request(`${base}/event?directory=x`)));
  assert.ok(isLongLived(new Request(`${base}/session/ses_1/command`, { method: "POST" })));
  assert.ok(!isLongLived(new Request(`${base}/session/ses_1/prompt_async`, { method: "POST" })));
  assert.ok(!isLongLived(new Request(`${base}/session`, { method: "POST" })));
  const res = await timedFetch(100)(new Request(`${base}/global/event`));
  const reader = res.body!.getReader();
  await new Promise((r) => setTimeout(r, 300));
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value), /server\.connected/, "still readable past the limit");
  await reader.cancel();
});

test("through the OpenCode SDK: the result carries the timeout as its error", async () => {
  const client = createOpencodeClient({ baseUrl: base, directory: "/tmp", fetch: timedFetch(200) });
  const t0 = performance.now();
  const res = await client.session.status();
  assert.ok(performance.now() - t0 < 1500);
  assert.ok(res.error instanceof OpencodeTimeoutError, String(res.error));
  assert.match((res.error as Error).message, /^OpenCode did not answer within 200 ms \(GET \/session\/status\)$/);
});

test("matrix-bot-sdk requests end at matrix.requestTimeoutMs; the long-polling sync keeps its own", async () => {
  const client = new DurableMatrixClient(base, "token", new MemoryStorageProvider(), { requestTimeoutMs: 1000 });
  const hung = await timed(client.getRoomStateEvent("!r:x", "m.room.member", "@a:x"));
  assert.ok(hung.err instanceof HomeserverTimeoutError, String(hung.err));
  assert.match((hung.err as Error).message, /^the homeserver did not answer within 1 s \(GET \/_matrix\/client\/v3\/rooms\/.*\/state\/m\.room\.member\/.*\)$/);
  assert.ok(hung.ms >= 950 && hung.ms < 3000, `took ${hung.ms} ms`);
  // Media downloads had no limit at all in the SDK.
  const media = await timed(client.downloadContent("mxc://x/abc"));
  assert.ok(media.err instanceof HomeserverTimeoutError && media.ms < 3000, `download: ${String(media.err)} after ${media.ms} ms`);
  const sync = await timed(client.doRequest("GET", "/_matrix/client/v3/sync", { timeout: 0 }, null, 2000));
  assert.ok(!(sync.err instanceof HomeserverTimeoutError), "the sync's own error, not ours");
  assert.ok(sync.ms >= 1900, `the sync waits its own 2 s, not 1 s (${sync.ms} ms)`);
});

test("the send CLI's client: a hung request fails within the limit as HomeserverTimeout", async () => {
  const hs = new FetchClient(base, "token", { timeoutMs: 300 });
  const hung = await timed(hs.sendMessage("!r:x", "txn1", { msgtype: "m.text", body: "hi" }));
  assert.ok(hung.err instanceof HomeserverTimeout, String(hung.err));
  assert.match((hung.err as Error).message, /^the homeserver did not answer PUT \/_matrix\/client\/v3\/rooms\/.*\/send\/m\.room\.message\/txn1 within 0\.3 s$/);
  assert.ok(hung.ms < 1500);
});
