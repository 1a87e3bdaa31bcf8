import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { PassThrough } from "node:stream";
import { createLogger } from "../../src/log.ts";
import { StartupError } from "../../src/startup/errors.ts";
import { checkExternalOpencode, opencodeProblemText, probeOpencode, rememberOpencodeReached } from "../../src/opencode/server-check.ts";
import { openDatabase } from "../../src/store/db.ts";
import { KeyValue } from "../../src/store/key-value.ts";
import { freePort } from "../harness/net.ts";

// What the bot says about the OpenCode server at opencode.serverUrl when it starts: OpenCode's
// health answer, wrong credentials, something that is not OpenCode, nothing at all; and the rule
// that an unreachable URL stops only a bot that has never reached it.

const servers: Server[] = [];
let base = "";
let webApp = "";
const listen = async (server: Server): Promise<string> => {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
};
before(async () => {
  // Like `opencode serve`: open without a password, or one that a wrong password does not pass.
  const right = `Basic ${Buffer.from("opencode:right").toString("base64")}`;
  base = await listen(createServer((req, res) => {
    if (req.headers.authorization !== undefined && req.headers.authorization !== right) res.writeHead(401).end();
    else if (req.url === "/global/health") res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ healthy: true, version: "1.2.3" }));
    else res.writeHead(404).end();
  }));
  webApp = await listen(createServer((_req, res) => void res.writeHead(200, { "content-type": "text/html" }).end("<html>a web app</html>")));
});
after(() => servers.forEach((s) => s.close()));

test("OpenCode's health answer, wrong credentials, a server that is not OpenCode, a closed port", async () => {
  assert.deepEqual(await probeOpencode(base, undefined), { ok: true, version: "1.2.3" });
  assert.deepEqual(await probeOpencode(base, { password: "right" }), { ok: true, version: "1.2.3" });
  const wrong = await probeOpencode(base, { password: "wrong" });
  assert.ok(!wrong.ok);
  assert.equal(opencodeProblemText(base, wrong, { OPENCODE_SERVER_PASSWORD: "wrong" }),
    `OpenCode at ${base} (opencode.serverUrl) refused the bot's credentials (opencode.username and opencode.password, from OPENCODE_SERVER_PASSWORD): HTTP 401. Use the server's OPENCODE_SERVER_USERNAME and OPENCODE_SERVER_PASSWORD.`);
  const html = await probeOpencode(webApp, undefined);
  assert.ok(!html.ok);
  assert.equal(opencodeProblemText(webApp, html, {}),
    `${webApp} (opencode.serverUrl) answers, but not as an OpenCode server (HTTP 200 without OpenCode's health answer for /global/health). Use the address \`opencode serve\` prints ("opencode server listening on …").`);
  const closed = `http://127.0.0.1:${await freePort()}`;
  const none = await probeOpencode(closed, undefined);
  assert.ok(!none.ok);
  assert.equal(opencodeProblemText(closed, none, { OPENCODE_SERVER_URL: closed }),
    `Cannot reach OpenCode at ${closed} (opencode.serverUrl, from OPENCODE_SERVER_URL): connection refused. Is \`opencode serve\` running there? (Without opencode.serverUrl the bot starts its own.)`);
});

test("an unreachable URL stops a first start (exit code 1), and only warns once the bot has reached it", async () => {
  const db = openDatabase(":memory:");
  const kv = new KeyValue(db);
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on("data", (c: Buffer) => lines.push(c.toString("utf8")));
  const log = createLogger("info", [], stream);
  const closed = `http://127.0.0.1:${await freePort()}`;

  const refused = await checkExternalOpencode(closed, {}, kv, log, {}, 0).then(() => undefined, (err: unknown) => err);
  assert.ok(refused instanceof StartupError);
  assert.equal(refused.exitCode, 1);
  assert.equal(refused.message.split("\n")[1], "The bot has never reached this URL, so it is most likely wrong; once it has, the bot waits for OpenCode instead of stopping.");

  // A URL that answered once is remembered: the next start goes on without it, as a running bot does.
  await checkExternalOpencode(base, {}, kv, log, {}, 0);
  rememberOpencodeReached(kv, closed);
  await checkExternalOpencode(closed, {}, kv, log, {}, 0);
  assert.ok(lines.some((l) => l.includes("OpenCode is not reachable; it was before, so the bot starts and keeps trying")), lines.join(""));

  // Wrong credentials stop even a known URL: waiting cannot fix them.
  const locked = await checkExternalOpencode(base, { password: "wrong" }, kv, log, {}, 0).then(() => undefined, (err: unknown) => err);
  assert.ok(locked instanceof StartupError);
  assert.equal(locked.exitCode, 2);
  db.close();
});
