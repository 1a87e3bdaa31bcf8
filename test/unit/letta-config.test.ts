import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "letta-cfg-"));
const minimal = join(dir, "min.yaml");
writeFileSync(minimal, "matrix: { homeserverUrl: 'http://127.0.0.1:8008', accessToken: 'tok' }\naccess: { allowedUsers: ['@a:x'] }\n");

test("without letta.baseUrl there is no Letta backend; the other keys have defaults", () => {
  const c = loadConfig({ file: minimal, env: {} });
  assert.equal(c.letta.baseUrl, undefined);
  assert.equal(c.letta.prefix, "!letta");
  assert.equal(c.letta.maxRetries, 3);
  assert.equal(c.letta.retryDelayMs, 1000);
  assert.equal(c.letta.timeoutMs, 60_000);
  assert.equal(c.letta.defaultAgent, undefined);
  assert.equal(c.letta.model, undefined);
});

test("LETTA_* environment variables override the file", () => {
  const c = loadConfig({
    file: minimal,
    env: {
      LETTA_BASE_URL: "http://127.0.0.1:8283",
      LETTA_API_TOKEN: "secret-token",
      LETTA_DEFAULT_AGENT: "pal",
      LETTA_MODEL: "openai/gpt-4.1-mini",
      LETTA_EMBEDDING: "openai/text-embedding-3-small",
      LETTA_MAX_RETRIES: "5",
      LETTA_RETRY_DELAY_MS: "250",
      LETTA_TIMEOUT_MS: "30000",
      LETTA_COMMAND_PREFIX: "!l",
      LETTA_DELEGATE_TO_OPENCODE: "true",
      LETTA_MCP_URL: "http://bot:8080/mcp",
      LETTA_DELEGATION_WAIT_MS: "40000",
    },
  });
  assert.deepEqual(c.letta, {
    baseUrl: "http://127.0.0.1:8283",
    apiToken: "secret-token",
    prefix: "!l",
    defaultAgent: "pal",
    model: "openai/gpt-4.1-mini",
    embedding: "openai/text-embedding-3-small",
    maxRetries: 5,
    retryDelayMs: 250,
    timeoutMs: 30_000,
    delegateToOpencode: true,
    mcpUrl: "http://bot:8080/mcp",
    delegationWaitMs: 40_000,
  });
});

test("letta.delegateToOpencode is off by default, reads on/off words from the environment, and refuses others by name", () => {
  assert.equal(loadConfig({ file: minimal, env: {} }).letta.delegateToOpencode, false);
  assert.equal(loadConfig({ file: minimal, env: { LETTA_DELEGATE_TO_OPENCODE: "off" } }).letta.delegateToOpencode, false);
  assert.equal(loadConfig({ file: minimal, env: { LETTA_DELEGATE_TO_OPENCODE: "1" } }).letta.delegateToOpencode, true);
  assert.throws(() => loadConfig({ file: minimal, env: { LETTA_DELEGATE_TO_OPENCODE: "maybe" } }), /letta\.delegateToOpencode/);
});

test("a wrong Letta value names its key", () => {
  assert.throws(() => loadConfig({ file: minimal, env: { LETTA_BASE_URL: "letta.local" } }), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /letta\.baseUrl \(from LETTA_BASE_URL\)/);
    return true;
  });
  assert.throws(() => loadConfig({ file: minimal, env: { LETTA_MAX_RETRIES: "many" } }), /letta\.maxRetries \(from LETTA_MAX_RETRIES\)/);
});
