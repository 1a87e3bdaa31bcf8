import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { loadConfig, settingName } from "../../src/config/load.ts";
import { parseMainArgs } from "../../src/startup/args.ts";
import { renderTable } from "../../src/check.ts";
import { UsageError, configErrorText, fsProblem, networkProblem } from "../../src/startup/errors.ts";
import { matrixRefusal, settingsName } from "../../src/startup/matrix-check.ts";
import { directoryProblem } from "../../src/startup/paths.ts";
import { exampleValues, placeholderProblems } from "../../src/startup/placeholders.ts";

// The pure parts of the start-up checks: the command line, the example's placeholders, errors
// in words, the check table.

const dir = mkdtempSync(join(tmpdir(), "startup-words-"));

test("the command line: --config <file>, --check, --help; anything else is refused in words", () => {
  assert.deepEqual(parseMainArgs([]), { configFile: undefined, check: false, help: false });
  assert.deepEqual(parseMainArgs(["--config", "a.yaml", "--check"]), { configFile: "a.yaml", check: true, help: false });
  assert.deepEqual(parseMainArgs(["--config=b.yaml"]), { configFile: "b.yaml", check: false, help: false });
  const refused = (argv: string[]): string => {
    try {
      parseMainArgs(argv);
    } catch (err) {
      assert.ok(err instanceof UsageError);
      return err.message;
    }
    return assert.fail(`${argv.join(" ")} was accepted`);
  };
  // The old parser read the flag's missing value as undefined and fell back to the default file.
  assert.equal(refused(["--config"]), "--config needs a file name, e.g. --config config/config.yaml");
  assert.equal(refused(["--config", "--check"]), "--config needs a file name, e.g. --config config/config.yaml");
  assert.equal(refused(["--config", " "]), "--config needs a file name, e.g. --config config/config.yaml");
  assert.equal(refused(["--chek"]), "Unknown option --chek; the bot knows --config <file>, --check and --help");
  assert.equal(refused(["config.yaml"]), "Unexpected argument config.yaml; a config file is given as --config config.yaml");
});

test("the example config as it is: its token and its allowed users are named, nothing else", () => {
  const config = loadConfig({ file: "config/config.example.yaml", env: {} });
  assert.deepEqual(placeholderProblems(config, {}), [
    `matrix.accessToken is still the example's placeholder "syt_replace_me": put the bot's access token there, or set matrix.userId and matrix.password instead.`,
    `access.allowedUsers still holds the example's "@alice:example.org", "@*:example.org": list the Matrix ids (or patterns) of the people who may use the bot.`,
  ]);
});

test("values of .env.example are named with their variable", () => {
  const env = { MATRIX_HOMESERVER_URL: "https://matrix.example.org", MATRIX_ACCESS_TOKEN: "syt_replace_me", BOT_ALLOWED_USERS: "@you:example.org" };
  const config = loadConfig({ file: "/dev/null", env });
  assert.deepEqual(placeholderProblems(config, env), [
    `matrix.accessToken (from MATRIX_ACCESS_TOKEN) is still the example's placeholder "syt_replace_me": put the bot's access token there, or set matrix.userId and matrix.password instead.`,
    `matrix.homeserverUrl (from MATRIX_HOMESERVER_URL) is still the example's https://matrix.example.org: put your homeserver's client-server URL there.`,
    `access.allowedUsers (from BOT_ALLOWED_USERS) still holds the example's "@you:example.org": list the Matrix ids (or patterns) of the people who may use the bot.`,
  ]);
});

test("every commented-out example value is refused once uncommented; real values pass", () => {
  const example = readFileSync("config/config.example.yaml", "utf8");
  for (const { value } of exampleValues) assert.ok(example.includes(`"${value}"`), `${value} is in the example file`);
  // Uncomment every commented key of the example with a quoted value or a URL: the placeholders among them are named.
  const uncommented = parse(example.replace(/^(\s*)# (\w+: (?:"[^"]*"|https?:\S+))(\s{2,}env: .*)?$/gm, "$1$2")) as Record<string, unknown>;
  const file = join(dir, "uncommented.yaml");
  writeFileSync(file, JSON.stringify(uncommented));
  const problems = placeholderProblems(loadConfig({ file, env: {} }), {}).map((p) => p.split(" ")[0]);
  for (const key of ["matrix.accessToken", "matrix.userId", "matrix.password", "opencode.password", "letta.apiToken", "notify.token", "notify.defaultRoom", "access.allowedUsers"]) {
    assert.ok(problems.includes(key), `${key} is named (got ${problems.join(", ")})`);
  }
  const real = loadConfig({ file: "/dev/null", env: { MATRIX_HOMESERVER_URL: "https://matrix.org", MATRIX_ACCESS_TOKEN: "syt_abc", BOT_ALLOWED_USERS: "@me:matrix.org,@*:examples.org" } });
  assert.deepEqual(placeholderProblems(real, {}), []);
});

test("a setting is named with the variable it came from", () => {
  assert.equal(settingName("matrix.accessToken", {}), "matrix.accessToken");
  assert.equal(settingName("matrix.accessToken", { MATRIX_ACCESS_TOKEN: "x" }), "matrix.accessToken, from MATRIX_ACCESS_TOKEN");
  assert.equal(settingName("matrix.accessToken", { MATRIX_ACCESS_TOKEN: "" }), "matrix.accessToken");
  assert.equal(settingsName(["matrix.userId", "matrix.password"], { MATRIX_PASSWORD: "x" }), "matrix.userId and matrix.password, from MATRIX_PASSWORD");
});

test("network failures in words, wherever the client put the code", () => {
  const fetchFailed = (cause: unknown): Error => new TypeError("fetch failed", { cause });
  const coded = (code: string): Error => Object.assign(new Error(code), { code });
  assert.equal(networkProblem(fetchFailed(coded("ECONNREFUSED")), 10), "connection refused");
  // localhost: ::1 and 127.0.0.1 both refused.
  assert.equal(networkProblem(fetchFailed(new AggregateError([coded("ECONNREFUSED"), coded("ECONNREFUSED")])), 10), "connection refused");
  assert.equal(networkProblem(fetchFailed(coded("ENOTFOUND")), 10), "no such host name (DNS)");
  assert.equal(networkProblem(new DOMException("The operation was aborted due to timeout", "TimeoutError"), 10), "no answer within 10 s");
  assert.equal(networkProblem(fetchFailed(coded("DEPTH_ZERO_SELF_SIGNED_CERT")), 10), "its TLS certificate is not trusted (DEPTH_ZERO_SELF_SIGNED_CERT)");
  assert.equal(networkProblem(new Error("no code"), 10), undefined);
  assert.equal(fsProblem(coded("EACCES")), "permission denied");
  assert.equal(fsProblem(coded("EROFS")), "the file system is read-only");
});

test("a homeserver's refusal is quoted with its code and reason", () => {
  assert.equal(matrixRefusal({ status: 401, json: { errcode: "M_UNKNOWN_TOKEN", error: "Invalid access token passed." } }), "M_UNKNOWN_TOKEN (Invalid access token passed)");
  assert.equal(matrixRefusal({ status: 502, json: undefined }), "HTTP 502");
});

test("a directory under a file cannot be made, and the file is named", () => {
  const file = join(dir, "a-file");
  writeFileSync(file, "");
  assert.equal(directoryProblem(join(file, "data")), `${file} is a file, not a directory`);
  assert.equal(directoryProblem(join(dir, "new", "deeper")), undefined);
});

test("the check table: a mark, the part, the reason; further lines indented; a summary", () => {
  const table = renderTable([
    { name: "config", status: "ok", detail: "config/config.yaml" },
    { name: "homeserver", status: "fail", detail: "Cannot reach it.\nSecond line." },
    { name: "sandbox", status: "warn", detail: "bwrap is not installed" },
    { name: "Letta", status: "skip", detail: "not configured" },
  ]);
  assert.equal(table, [
    "✅ config      config/config.yaml",
    "❌ homeserver  Cannot reach it.",
    "               Second line.",
    "⚠️ sandbox     bwrap is not installed",
    "➖ Letta       not configured",
    "1 of 4 checks failed.",
    "",
  ].join("\n"));
  assert.match(renderTable([{ name: "a", status: "warn", detail: "w" }]), /All checks passed, 1 with a warning\.\n$/);
});

test("with no config file and no variable, the likelier cause comes first", () => {
  assert.match(configErrorText("Invalid configuration:", undefined, {}), /^No config file was read: there is no config\/config\.yaml, and neither --config nor BOT_CONFIG names one\. Copy config\/config\.example\.yaml to config\/config\.yaml and fill it in\.\nInvalid configuration:$/);
  // Configured by the environment (as in the container) or by a file: the validation errors alone.
  assert.equal(configErrorText("Invalid configuration:", undefined, { MATRIX_HOMESERVER_URL: "http://hs" }), "Invalid configuration:");
  assert.equal(configErrorText("Invalid configuration:", "my.yaml", {}), "Invalid configuration:");
});
