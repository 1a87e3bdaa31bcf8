import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot at its most talkative (LOG_LEVEL=trace) runs a prompt, commands, failing requests to
// a Letta server that quotes the request's Authorization header back in its errors, and a stop.
// No token may show up in any log line, nor in anything the people in the room read.

const lettaToken = `letta-secret-${randomBytes(12).toString("hex")}`;
const notifyToken = `notify-secret-${randomBytes(12).toString("hex")}`;
// A wrong token someone presents to /notify: what was presented must not be logged either.
const wrongNotifyToken = `notify-guess-${randomBytes(12).toString("hex")}`;
let env: TestEnv;
let letta: Server;
const lettaSaw: string[] = [];
/** "plain": Letta fails every request with a bare 500; "echo": its errors quote the request's Authorization header, as some proxies do. */
let lettaMode: "plain" | "echo" = "plain";

before(async () => {
  letta = createServer((req, res) => {
    const auth = req.headers.authorization ?? "";
    lettaSaw.push(auth);
    res.writeHead(500, { "content-type": "application/json" });
    const detail = lettaMode === "echo" ? `internal error handling ${req.method} ${req.url} (Authorization: ${auth})` : "internal error";
    res.end(JSON.stringify({ detail }));
  });
  await new Promise<void>((r) => letta.listen(0, "127.0.0.1", () => r()));
  const lettaUrl = `http://127.0.0.1:${(letta.address() as AddressInfo).port}`;
  env = await TestEnv.create({
    name: "secrets",
    botEnv: {
      LOG_LEVEL: "trace",
      LETTA_BASE_URL: lettaUrl,
      LETTA_API_TOKEN: lettaToken,
      LETTA_DEFAULT_AGENT: "assistant",
      LETTA_MAX_RETRIES: "1",
      LETTA_RETRY_DELAY_MS: "50",
      BOT_NOTIFY_TOKEN: notifyToken,
    },
  });
});
after(async () => {
  await env?.close();
  await new Promise<void>((r) => {
    if (!letta) return r();
    letta.close(() => r());
    letta.closeAllConnections();
  });
});

const secrets = (): Record<string, string> => ({
  "the bot's access token": env.accounts.bot.accessToken,
  "alice's access token": env.accounts.alice.accessToken,
  "bob's access token": env.accounts.bob.accessToken,
  "mallory's access token": env.accounts.mallory.accessToken,
  "the Letta token": lettaToken,
  "the notify token": notifyToken,
  "a wrong notify token presented to /notify": wrongNotifyToken,
});

/** Where a secret (whole, or its random tail: a token cut or re-encoded) shows up in the log lines or the room's messages. */
async function leaks(lines: string[], roomSince = 0): Promise<string[]> {
  const room = (await env.users.alice.roomMessages(env.roomId, 300)).filter((e) => e.origin_server_ts >= roomSince);
  const found: string[] = [];
  for (const [what, secret] of Object.entries(secrets())) {
    const probes = [secret, secret.slice(-16)];
    for (const [i, line] of lines.entries()) if (probes.some((p) => line.includes(p))) found.push(`${what} in log line ${i}: ${line.slice(0, 400)}`);
    for (const e of room) {
      const text = JSON.stringify(e.content);
      if (probes.some((p) => text.includes(p))) found.push(`${what} in the room, from ${e.sender}: ${text.slice(0, 400)}`);
    }
  }
  return found;
}

describe("secrets", () => {
  test("no token appears in the trace log or in the room: a prompt, commands, a failing Letta, a stop", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc hello, keep my secrets");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: hello, keep my secrets");
    const answers: string[] = [];
    for (const cmd of ["!oc status", "!oc sessions", "!oc model nope/nope", "!oc file ../../etc/passwd", "!oc attach ses_doesnotexist1"]) answers.push(await env.ask(cmd));
    answers.push(await env.ask("!oc status", { threadRoot: root }));
    for (const cmd of ["!letta hello there", "!letta agents", "!letta status"]) answers.push(await env.ask(cmd));
    assert.ok(answers.slice(-3).every((a) => /Letta/.test(a)), `Letta's failures were answered: ${answers.slice(-3).join(" | ")}`);
    assert.ok(lettaSaw.some((a) => a.includes(lettaToken)), "the bot did send its Letta token (else this test proves nothing)");
    const base = `http://127.0.0.1:${env.bot.httpPort}`;
    await fetch(`${base}/health`);
    await fetch(`${base}/metrics`);
    // /notify, with the right token, a wrong one, and a malformed header carrying the right one.
    const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
    const payload = JSON.stringify({ title: "Build finished", message: "all green", status: "deployed", sessionId });
    const post = (authorization: string): Promise<number> =>
      fetch(`${base}/notify`, { method: "POST", headers: { authorization, "content-type": "application/json" }, body: payload }).then((r) => r.status);
    assert.equal(await post(`Bearer ${notifyToken}`), 200, "the right token is accepted");
    assert.equal(await post(`Bearer ${wrongNotifyToken}`), 401);
    assert.equal(await post(`Token ${notifyToken}`), 401);
    await env.waitForBot("the notification in the session's thread", (e) => String(e.content.body).includes("Build finished"));
    assert.equal(await env.bot.stop("SIGTERM"), 0);

    const lines = env.bot.lines;
    assert.ok(lines.length > 10, `the bot logged (${lines.length} lines)`);
    assert.ok(lines.some((l) => l.includes('"level":10') || l.includes('"level":20')), "trace/debug lines were written");
    const found = await leaks(lines);
    assert.deepEqual(found, [], `secrets leaked:\n${found.join("\n")}`);
    t.diagnostic(`${lines.length} log lines and the room's messages scanned for ${Object.keys(secrets()).length} secrets; Letta got ${lettaSaw.length} requests`);
  });

  test(
    "a Letta error that quotes the request's Authorization header leaks the token nowhere",
    async () => {
      lettaMode = "echo";
      await env.restartBot("SIGTERM");
      const since = Date.now();
      const answer = await env.ask("!letta hello again");
      assert.match(answer, /Letta/);
      assert.equal(await env.bot.stop("SIGTERM"), 0);
      const found = await leaks(env.bot.lines, since);
      assert.deepEqual(found, [], `secrets leaked:\n${found.join("\n")}`);
    },
  );
});
