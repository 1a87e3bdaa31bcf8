import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { TestEnv } from "./env.ts";

// A hung OpenCode server: its health check and event stream still work (so the bot sees it as
// connected), but every other request is accepted and never answered, as when a handler hangs.
// Each call must end at opencode.requestTimeoutMs with a clear message in the thread, and the
// room's next message must be answered: the room is not stalled for minutes per call.

const limitMs = 2000;

async function startHungOpencode(): Promise<{ url: string; hung: () => number; close: () => Promise<void> }> {
  const open = new Set<ServerResponse>();
  let hung = 0;
  const server: Server = createServer((req, res) => {
    open.add(res);
    res.on("close", () => open.delete(res));
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/global/health") {
      res.writeHead(200, { "content-type": "application/json" }).end('{"healthy":true,"version":"0.0.0-hung"}');
    } else if (path === "/global/event") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const send = (type: string): boolean => res.write(`data: ${JSON.stringify({ directory: "", payload: { type, properties: {} } })}\n\n`);
      send("server.connected");
      const beat = setInterval(() => send("server.heartbeat"), 5000);
      res.on("close", () => clearInterval(beat));
    } else {
      hung++; // accepted, never answered
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hung: () => hung,
    close: async () => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe("a hung OpenCode server", () => {
  let env: TestEnv;
  let oc: Awaited<ReturnType<typeof startHungOpencode>>;
  before(async () => {
    oc = await startHungOpencode();
    env = await TestEnv.create({ name: "hung", botEnv: { OPENCODE_SERVER_URL: oc.url, OPENCODE_REQUEST_TIMEOUT_MS: String(limitMs) } });
  });
  after(async () => {
    await env?.close();
    await oc?.close();
  });

  test("a prompt is told within the limit that OpenCode did not answer, and the room's next message is answered", async (t) => {
    const { alice } = env.users;
    const t0 = performance.now();
    const prompt = await alice.sendText(env.roomId, "!oc hello, are you there?");
    // Sent at once, queued behind the prompt: a room's messages are handled one at a time.
    const next = await alice.sendText(env.roomId, "!oc sessions");
    const inReplyTo = (id: string) => (e: { content: Record<string, unknown> }) =>
      (e.content["m.relates_to"] as { "m.in_reply_to"?: { event_id?: string } } | undefined)?.["m.in_reply_to"]?.event_id === id;
    const told = await env.waitForBot("the timeout message", inReplyTo(prompt), 20_000);
    const toldMs = told.receivedAt - t0;
    assert.match(String(told.content.body), /OpenCode did not answer within 2 s \(POST \/session\)/);
    assert.ok(toldMs >= limitMs - 100, `not before the limit (${toldMs.toFixed(0)} ms)`);
    assert.ok(toldMs < limitMs + 8000, `told ${toldMs.toFixed(0)} ms after sending, limit ${limitMs} ms`);
    const answered = await env.waitForBot("the answer to the next message", inReplyTo(next), 20_000);
    assert.match(String(answered.content.body), /No OpenCode sessions in this room yet/);
    assert.ok(oc.hung() >= 1, "the bot's request reached the hung server");
    t.diagnostic(`timeout message after ${toldMs.toFixed(0)} ms; next message answered after ${(answered.receivedAt - t0).toFixed(0)} ms`);
  });

  test("a command that asks OpenCode is told too, and the bot keeps answering", async () => {
    const body = await env.ask("!oc commands");
    assert.match(body, /^⚠️ `commands` failed: OpenCode did not answer within 2 s \(GET \/command\)/);
    assert.match(await env.ask("!oc help"), /!oc/);
  });
});
