import { after, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { isBotOnlyVariable } from "../../src/process/child-env.ts";
import { captionOf, inline } from "../../src/commands/voice-prompt.ts";
import type { IncomingMessage } from "../../src/matrix/inbound.ts";
import { createTranscriber, endpointOf, providerMessage, TranscriptionError, uploadName } from "../../src/voice/transcriber.ts";
import { TranscriptionServer } from "../harness/transcription-server.ts";

const dir = mkdtempSync(join(tmpdir(), "transcription-cfg-"));
const minimal = join(dir, "min.yaml");
writeFileSync(minimal, "matrix: { homeserverUrl: 'http://127.0.0.1:8008', accessToken: 'tok' }\naccess: { allowedUsers: ['@a:x'] }\n");
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const base = "matrix: { homeserverUrl: 'http://h', accessToken: 't' }\naccess: { allowedUsers: ['@a:x'] }\n";

test("without the section there is no transcription; a section without baseUrl has its defaults and is off", () => {
  assert.equal(loadConfig({ file: minimal, env: {} }).transcription, undefined);
  assert.equal(createTranscriber(undefined), undefined);
  const c = loadConfig({ file: file("empty.yaml", `${base}transcription:\n`), env: {} });
  assert.equal(c.transcription, undefined, "a section with every key commented out is no section");
  const d = loadConfig({ file: file("defaults.yaml", `${base}transcription: { language: de }\n`), env: {} });
  assert.deepEqual(d.transcription, { model: "whisper-1", language: "de", timeoutMs: 60_000, maxBytes: 25 * 1024 * 1024 });
  assert.equal(createTranscriber(d.transcription), undefined, "no baseUrl: off");
});

test("TRANSCRIPTION_* variables set the section; numbers are read as numbers", () => {
  const c = loadConfig({
    file: minimal,
    env: {
      TRANSCRIPTION_BASE_URL: "https://api.groq.com/openai/v1",
      TRANSCRIPTION_API_KEY: "gsk-secret-value",
      TRANSCRIPTION_MODEL: "whisper-large-v3",
      TRANSCRIPTION_LANGUAGE: "en",
      TRANSCRIPTION_TIMEOUT_MS: "30000",
      TRANSCRIPTION_MAX_BYTES: "1048576",
    },
  });
  assert.deepEqual(c.transcription, {
    baseUrl: "https://api.groq.com/openai/v1",
    apiKey: "gsk-secret-value",
    model: "whisper-large-v3",
    language: "en",
    timeoutMs: 30_000,
    maxBytes: 1_048_576,
  });
  assert.equal(createTranscriber(c.transcription)?.endpoint, "https://api.groq.com/openai/v1/audio/transcriptions");
});

test("a bad URL, a key without an endpoint and wrong numbers are refused, naming the key (and the variable)", () => {
  assert.throws(() => loadConfig({ file: minimal, env: { TRANSCRIPTION_BASE_URL: "api.openai.com/v1" } }), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /transcription\.baseUrl \(from TRANSCRIPTION_BASE_URL\): must be an http\(s\) URL such as https:\/\/api\.openai\.com\/v1/);
    return true;
  });
  assert.throws(() => loadConfig({ file: file("ftp.yaml", `${base}transcription: { baseUrl: 'ftp://whisper.local/v1' }\n`), env: {} }), /transcription\.baseUrl: must be an http\(s\) URL/);
  assert.throws(() => loadConfig({ file: minimal, env: { TRANSCRIPTION_API_KEY: "sk-1234567" } }), /transcription\.baseUrl: transcription\.apiKey is set but not the endpoint/);
  assert.throws(() => loadConfig({ file: minimal, env: { TRANSCRIPTION_BASE_URL: "http://127.0.0.1:8000/v1", TRANSCRIPTION_TIMEOUT_MS: "soon" } }), /transcription\.timeoutMs \(from TRANSCRIPTION_TIMEOUT_MS\)/);
  assert.throws(() => loadConfig({ file: minimal, env: { TRANSCRIPTION_MAX_BYTES: "999999999" } }), /transcription\.maxBytes \(from TRANSCRIPTION_MAX_BYTES\): at most 100 MB/);
  assert.throws(() => loadConfig({ file: minimal, env: { TRANSCRIPTION_LANGUAGE: "English" } }), /transcription\.language \(from TRANSCRIPTION_LANGUAGE\): must be a language code/);
  assert.throws(() => loadConfig({ file: file("typo.yaml", `${base}transcription: { baseURL: 'http://x/v1' }\n`), env: {} }), /baseURL/);
});

test("the key is the bot's own: never passed to the agent", () => {
  assert.ok(isBotOnlyVariable("TRANSCRIPTION_API_KEY"));
  assert.throws(() => loadConfig({ file: minimal, env: { OPENCODE_PASS_ENV: "TRANSCRIPTION_API_KEY" } }), /TRANSCRIPTION_API_KEY is the bot's own setting or secret/);
});

test("endpoint, upload name, provider message, caption and inline text", () => {
  assert.equal(endpointOf("https://api.openai.com/v1/"), "https://api.openai.com/v1/audio/transcriptions");
  assert.equal(endpointOf("http://127.0.0.1:8000/v1/audio/transcriptions"), "http://127.0.0.1:8000/v1/audio/transcriptions");
  assert.equal(uploadName("Voice message", "audio/ogg; codecs=opus"), "Voice message.ogg");
  assert.equal(uploadName("memo.m4a", "audio/mp4"), "memo.m4a");
  assert.equal(uploadName("rec", "audio/webm"), "rec.webm");
  assert.equal(providerMessage('{"error":{"message":"Invalid file format.","type":"invalid_request_error"}}'), "Invalid file format.");
  assert.equal(providerMessage('{"detail":"Model not found"}'), "Model not found");
  assert.equal(providerMessage("<html>\n  Bad Gateway\n</html>"), "<html> Bad Gateway </html>");
  const msg = (content: Record<string, unknown>): IncomingMessage => ({ roomId: "!r", eventId: "$e", sender: "@a:x", msgtype: "m.audio", body: String(content.body), threadRoot: undefined, isEdit: false, timestamp: 0, content });
  assert.equal(captionOf(msg({ body: "Voice message" })), "", "Element: no filename, the body is not a caption");
  assert.equal(captionOf(msg({ body: "voice.ogg", filename: "voice.ogg" })), "");
  assert.equal(captionOf(msg({ body: "!oc translate this", filename: "voice.ogg" })), "!oc translate this");
  assert.equal(inline("fix *all*\n the `tests` <now>"), "fix \\*all\\* the \\`tests\\` \\<now\\>");
});

let server: TranscriptionServer | undefined;
after(async () => server?.close());

test("the client posts the file and the model as multipart; errors carry the status and the provider's words, never the key", async () => {
  const apiKey = "sk-unit-0123456789";
  server = await TranscriptionServer.start({ model: "whisper-1", apiKey });
  const t = createTranscriber({ baseUrl: `${server.url}/v1`, apiKey, model: "whisper-1", language: "en", timeoutMs: 5000, maxBytes: 1024 * 1024 });
  assert.ok(t);
  const audio = Buffer.from([0x4f, 0x67, 0x67, 0x53, 0x00, 0x0d, 0x0a, 0xff, 0xfe, 0x2d, 0x2d]);
  server.script(audio, { text: "  hello there " });
  assert.equal(await t.transcribe({ data: audio, mime: "audio/ogg", filename: "Voice message" }), "hello there");
  assert.deepEqual(server.requestsFor(audio).map((r) => [r.model, r.language, r.filename, r.refused]), [["whisper-1", "en", "Voice message.ogg", undefined]]);

  const broken = Buffer.from("broken audio");
  server.script(broken, { status: 503, body: JSON.stringify({ error: { message: `overloaded; your key ${apiKey}` } }) });
  await assert.rejects(t.transcribe({ data: broken, mime: "audio/ogg", filename: "x.ogg" }), (e: Error) => {
    assert.ok(e instanceof TranscriptionError);
    assert.equal(e.message, `${new URL(server?.url ?? "").host} answered HTTP 503: overloaded; your key [redacted]`);
    return true;
  });
  const wrongKey = createTranscriber({ baseUrl: `${server.url}/v1`, apiKey: "sk-other-key", model: "whisper-1", timeoutMs: 5000, maxBytes: 1024 });
  await assert.rejects(wrongKey?.transcribe({ data: audio, mime: "audio/ogg", filename: "x.ogg" }) ?? Promise.resolve(), /answered HTTP 400: wrong authorization/);
  // A port nobody listens on: one that was just free.
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const nobody = createTranscriber({ baseUrl: `http://127.0.0.1:${port}/v1`, model: "whisper-1", timeoutMs: 5000, maxBytes: 1024 });
  await assert.rejects(nobody?.transcribe({ data: audio, mime: "audio/ogg", filename: "x.ogg" }) ?? Promise.resolve(), new RegExp(`^TranscriptionError: cannot reach 127\\.0\\.0\\.1:${port}: ECONNREFUSED$`));
});
