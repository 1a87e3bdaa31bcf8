import { test } from "node:test";
import assert from "node:assert/strict";
import { childEnv } from "../../src/process/child-env.ts";
import { basicAuthHeaders } from "../../src/opencode/server-auth.ts";

const botEnv = {
  PATH: "/usr/bin", HOME: "/home/bot", LANG: "C.UTF-8", XDG_DATA_HOME: "/x", OPENCODE_CONFIG: "/c.json",
  MATRIX_ACCESS_TOKEN: "syt_secret", MATRIX_PASSWORD: "hunter2", BOT_NOTIFY_TOKEN: "n", LETTA_API_TOKEN: "l",
  OPENCODE_SERVER_PASSWORD: "operator-password", OPENAI_API_KEY: "sk-1", AWS_SECRET_ACCESS_KEY: "aws",
};

test("a child gets what a shell needs and what the operator named, never the bot's secrets", () => {
  const env = childEnv({ from: botEnv, passEnv: ["OPENAI_API_KEY", "MATRIX_PASSWORD"], extra: { OPENCODE_SERVER_PASSWORD: "generated" } });
  assert.deepEqual(env, {
    PATH: "/usr/bin", HOME: "/home/bot", LANG: "C.UTF-8", XDG_DATA_HOME: "/x", OPENCODE_CONFIG: "/c.json",
    OPENAI_API_KEY: "sk-1", OPENCODE_SERVER_PASSWORD: "generated",
  });
});

test("basic auth with only a password uses OpenCode's default user name", () => {
  assert.deepEqual(basicAuthHeaders({ password: "pw" }), { authorization: `Basic ${Buffer.from("opencode:pw").toString("base64")}` });
  assert.deepEqual(basicAuthHeaders({ username: "me", password: "pw" }), { authorization: `Basic ${Buffer.from("me:pw").toString("base64")}` });
  assert.deepEqual(basicAuthHeaders({ username: "me" }), {});
  assert.deepEqual(basicAuthHeaders({ password: "" }), {});
});
