import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot with no access token in its configuration: it logs in with its password and keeps the
// token it got in its database. That token is as good as the password, and the log scrubber
// learns it only at run time. The homeserver is reached through a proxy whose error answers
// quote the request's Authorization header (as some proxies do), so the token does reach the
// bot's log pipeline: it must come out of it as [redacted].

let env: TestEnv;
let proxy: Server;
let echoed = 0;

/** Requests the proxy answers itself with a 404 quoting the Authorization header; the bot copes with a 404 on each. */
const echoes = (method: string, path: string): boolean =>
  method === "GET" && (/\/account_data\/m\.direct$/.test(path) || /\/state\/m\.room\.member\//.test(path));

before(async () => {
  const upstream = new URL(loadStackInfo().synapse.baseUrl);
  proxy = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (echoes(req.method ?? "", path)) {
      echoed++;
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ errcode: "M_NOT_FOUND", error: `nothing at ${path} (request had Authorization: ${req.headers.authorization ?? "none"})` }));
      return;
    }
    const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", () => r()));
  env = await TestEnv.create({
    name: "login-secrets",
    botPasswordLogin: true,
    botEnv: { LOG_LEVEL: "trace", MATRIX_HOMESERVER_URL: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` },
  });
});
after(async () => {
  await env?.close();
  await new Promise<void>((r) => {
    if (!proxy) return r();
    proxy.close(() => r());
    proxy.closeAllConnections();
  });
});

describe("secrets learnt at run time", () => {
  test("the token of a password login and the password appear in no log line and no room event", async (t) => {
    const { alice } = env.users;
    const since = Date.now();
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc hello from a password login");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: hello from a password login");
    assert.match(await env.ask("!oc status", { threadRoot: root }), /\S/);
    assert.equal(await env.bot.stop("SIGTERM"), 0);

    const key = `matrix.login.${env.botUserId}`;
    const token = env.query<{ value: string }>("SELECT value FROM kv WHERE key = ?", key)[0]?.value ?? "";
    assert.ok(token.length >= 16, `the bot kept the token of its login under ${key}`);
    assert.notEqual(token, env.accounts.bot.accessToken, "a token of its own login, not the one from registration");
    assert.ok(echoed > 0, "the proxy quoted the bot's Authorization header back at least once (else this test proves nothing)");

    const secrets: Record<string, string> = { "the login token": token, "the bot's password": env.accounts.bot.password };
    const room = (await alice.roomMessages(env.roomId, 300)).filter((e) => e.origin_server_ts >= since - 5_000);
    const found: string[] = [];
    for (const [what, secret] of Object.entries(secrets)) {
      const probes = [secret, secret.slice(-16)];
      for (const [i, line] of env.bot.lines.entries()) if (probes.some((p) => line.includes(p))) found.push(`${what} in log line ${i}: ${line.slice(0, 400)}`);
      for (const e of room) {
        const text = JSON.stringify(e.content);
        if (probes.some((p) => text.includes(p))) found.push(`${what} in the room, from ${e.sender}: ${text.slice(0, 400)}`);
      }
    }
    assert.deepEqual(found, [], `secrets leaked:\n${found.join("\n")}`);
    assert.ok(env.bot.lines.some((l) => l.includes("Bearer [redacted]")), "the quoted header reached the log, scrubbed");
    t.diagnostic(`${env.bot.lines.length} log lines and ${room.length} room events scanned; the proxy echoed the header ${echoed} times`);
  });
});
