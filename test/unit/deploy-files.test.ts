import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { envOverrides } from "../../src/config/load.ts";

// No Docker engine runs on the development machines or in CI, so the deploy files are checked by
// what can run here: the compose file parsed and held against .env.example, the README's "Deploy"
// section and the bot's configuration; the Dockerfile read for the parts the issue asks for. The
// image's build steps themselves are replayed in test/e2e/image-replay.test.ts.

const repoDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const read = (f: string): string => readFileSync(join(repoDir, f), "utf8");

interface Healthcheck { test?: string[] | string; interval?: string; start_period?: string }
interface DependsOn { condition?: string; required?: boolean }
interface Service {
  image?: string; build?: unknown; command?: string[] | string; profiles?: string[];
  environment?: Record<string, string | number | null>; volumes?: string[]; ports?: string[]; expose?: string[];
  healthcheck?: Healthcheck; depends_on?: Record<string, DependsOn>; working_dir?: string;
}
interface Compose { services: Record<string, Service>; volumes?: Record<string, unknown> }

const composeText = read("docker-compose.yml");
const compose = YAML.parse(composeText, { merge: true }) as Compose;
const services = compose.services;
const service = (name: string): Service => {
  const s = services[name];
  assert.ok(s, `docker-compose.yml has a service ${name}`);
  return s;
};
const envExample = read(".env.example");
const envExampleKeys = new Set([...envExample.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
const composeVars = new Set([...composeText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!));
const readme = read("README.md");
const deploySection = ((): string => {
  const start = readme.indexOf("\n## Deploy\n");
  assert.ok(start >= 0, "README.md has a ## Deploy section");
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
})();
const dockerfile = read("Dockerfile");

/** Healthcheck command as one string ("CMD", "node", ... joined). */
const healthTest = (s: Service): string => (Array.isArray(s.healthcheck?.test) ? s.healthcheck.test.join(" ") : (s.healthcheck?.test ?? ""));
/** Container-side port of a `ports` entry such as "127.0.0.1:8080:8080" or an `expose` entry. */
const containerPorts = (s: Service): string[] => [...(s.ports ?? []), ...(s.expose ?? [])].map((p) => String(p).split(":").at(-1)!.replace(/\/.*$/, ""));

describe("docker-compose.yml", () => {
  test("has the bot, opencode-server, letta, and synapse behind the profile `homeserver`", () => {
    assert.ok(service("bot").build, "the bot is built from the Dockerfile");
    assert.match(JSON.stringify(service("opencode-server").command), /opencode.*serve/);
    assert.equal(service("letta").image, "letta/letta:0.16.8");
    assert.match(service("synapse").image ?? "", /^matrixdotorg\/synapse:/);
    assert.deepEqual(service("synapse").profiles, ["homeserver"]);
    for (const [name, s] of Object.entries(services)) {
      if (name.startsWith("synapse")) assert.deepEqual(s.profiles, ["homeserver"], `${name} only runs with the profile`);
      else assert.equal(s.profiles, undefined, `${name} runs without any profile`);
    }
  });

  test("every long-running service has a healthcheck on its health endpoint", () => {
    assert.match(healthTest(service("bot")), /healthcheck\.ts bot/);
    assert.match(healthTest(service("opencode-server")), /healthcheck\.ts opencode/);
    assert.match(healthTest(service("letta")), /\/v1\/health\//);
    assert.match(healthTest(service("synapse")), /\/health/);
    // The probes the bot image runs: the bot's /health, OpenCode's /global/health with basic auth.
    const probe = read("scripts/healthcheck.ts");
    assert.match(probe, /\/health`/);
    assert.match(probe, /\/global\/health`/);
    assert.match(probe, /OPENCODE_SERVER_PASSWORD/);
  });

  test("the bot waits for healthy dependencies; the synapse dependency is optional", () => {
    const deps = service("bot").depends_on ?? {};
    assert.equal(deps["opencode-server"]?.condition, "service_healthy");
    assert.equal(deps.letta?.condition, "service_healthy");
    assert.deepEqual(deps.synapse, { condition: "service_healthy", required: false });
    assert.equal(service("synapse").depends_on?.["synapse-init"]?.condition, "service_completed_successfully");
    for (const [name, s] of Object.entries(services)) {
      for (const dep of Object.keys(s.depends_on ?? {})) assert.ok(services[dep], `${name} depends on an existing service ${dep}`);
    }
  });

  test("named volumes are declared, data and workspace persist, and bot and OpenCode share the workspace path", () => {
    const declared = new Set(Object.keys(compose.volumes ?? {}));
    for (const [name, s] of Object.entries(services)) {
      for (const v of s.volumes ?? []) {
        const source = v.split(":")[0]!;
        if (source.startsWith(".") || source.startsWith("/")) continue; // bind mount
        assert.ok(declared.has(source), `${name}: volume ${source} is declared under volumes:`);
      }
    }
    assert.ok(service("bot").volumes?.includes("bot-data:/data"));
    assert.equal(service("bot").environment?.BOT_DATABASE_PATH, "/data/bot.db");
    const ws = service("bot").environment?.OPENCODE_WORKSPACE_DIR;
    assert.ok(service("bot").volumes?.includes(`workspace:${ws}`), "the bot's workspace dir is the workspace volume");
    assert.ok(service("opencode-server").volumes?.includes(`workspace:${ws}`), "opencode-server has it at the same path");
    assert.equal(service("opencode-server").working_dir, ws);
    assert.ok(
      service("opencode-server").volumes?.some((v) => /^\.\/\.opencode\/plugin\/matrix-notify\.js:\/home\/node\/\.config\/opencode\/plugin\/matrix-notify\.js/.test(v)),
      "the notify plugin is mounted into OpenCode's plugin folder",
    );
  });

  test("the bot is wired to the other services and listens on all interfaces inside its container", () => {
    const env = service("bot").environment ?? {};
    assert.equal(env.OPENCODE_SERVER_URL, "http://opencode-server:4096");
    assert.equal(env.LETTA_BASE_URL, "http://letta:8283");
    assert.equal(env.BOT_HTTP_HOST, "0.0.0.0");
    assert.ok(containerPorts(service("bot")).includes(String(env.BOT_HTTP_PORT)), "the bot's HTTP port is published");
    assert.ok(containerPorts(service("opencode-server")).includes("4096"));
    assert.ok(containerPorts(service("letta")).includes("8283"));
    assert.ok(containerPorts(service("synapse")).includes("8008"));
  });

  test("the bot's environment names only settings the bot reads", () => {
    const known = new Set(envOverrides.map((o) => o.env));
    for (const key of Object.keys(service("bot").environment ?? {})) assert.ok(known.has(key), `bot: ${key} is not a setting of the bot`);
  });

  test("opencode-server gives the notify plugin the variables it reads, pointing at the bot", () => {
    const plugin = join(repoDir, ".opencode/plugin/matrix-notify.js");
    const env = service("opencode-server").environment ?? {};
    if (existsSync(plugin)) {
      const names = new Set([...readFileSync(plugin, "utf8").matchAll(/process\.env\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!));
      assert.ok(names.size > 0, "the plugin reads its settings from the environment");
      for (const name of names) assert.ok(name in env, `opencode-server sets ${name}, which the plugin reads`);
    }
    assert.equal(env.MATRIX_NOTIFY_URL, `http://bot:${String(service("bot").environment?.BOT_HTTP_PORT)}/notify`);
    assert.equal(env.MATRIX_NOTIFY_TOKEN, service("bot").environment?.BOT_NOTIFY_TOKEN, "the plugin presents the token the bot expects");
  });

  test("every secret comes from .env: no literal secret values, every ${VAR} is in .env.example and back", () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries(s.environment ?? {})) {
        if (!/PASSWORD|TOKEN|SECRET|API_KEY/.test(key)) continue;
        assert.match(String(value), /^\$\{[A-Z0-9_]+(:[-?][^}]*)?\}$/, `${name}: ${key} comes from .env`);
      }
    }
    for (const v of composeVars) assert.ok(envExampleKeys.has(v), `.env.example lists ${v}, which docker-compose.yml uses`);
    for (const k of envExampleKeys) assert.ok(composeVars.has(k), `.env.example's ${k} is used in docker-compose.yml`);
    for (const line of envExample.split("\n").filter((l) => /^[A-Z_]*(PASSWORD|TOKEN|SECRET|API_KEY)=/.test(l))) {
      assert.match(line, /=$/, `.env.example leaves secrets empty: ${line}`);
    }
  });

  test("every service, port, volume and variable the README's Deploy section names is in the compose file", () => {
    const rows = deploySection.split("\n").filter((l) => /^\| `[a-z][a-z0-9-]*` \|/.test(l));
    assert.ok(rows.length >= 4, "the Deploy section has a table of services");
    const named: string[] = [];
    for (const row of rows) {
      const cells = row.split("|").slice(1, -1).map((c) => c.trim());
      const name = /^`([^`]+)`$/.exec(cells[0] ?? "")?.[1] ?? "";
      const s = service(name);
      named.push(name);
      for (const port of (cells[2] ?? "").matchAll(/`(\d+)`/g)) assert.ok(containerPorts(s).includes(port[1]!), `${name} has port ${port[1]}`);
      for (const vol of (cells[3] ?? "").matchAll(/`([a-z][a-z0-9-]*:\/[^`]*)`/g)) assert.ok(s.volumes?.includes(vol[1]!), `${name} mounts ${vol[1]}`);
      assert.ok(s.healthcheck?.test, `${name} has a healthcheck`);
    }
    for (const name of ["bot", "opencode-server", "letta", "synapse"]) assert.ok(named.includes(name), `the README's table names ${name}`);
    for (const m of deploySection.matchAll(/`([a-z][a-z0-9-]*-data|workspace|letta-pgdata)`/g)) {
      assert.ok(compose.volumes && m[1]! in compose.volumes, `volume ${m[1]} named in the README is declared`);
    }
    const envKeys = new Set([...deploySection.matchAll(/\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b/g)].map((m) => m[1]!));
    assert.ok(envKeys.size >= 8, "the Deploy section names the settings");
    for (const key of envKeys) assert.ok(composeText.includes(key), `${key}, named in the README's Deploy section, is in docker-compose.yml`);
    assert.match(deploySection, /cp \.env\.example \.env/);
    assert.match(deploySection, /docker compose up -d/);
    assert.match(deploySection, /--profile homeserver/);
  });

  test("`docker compose config` accepts the file (where the compose plugin exists)", (t) => {
    // Placeholders for the required variables, as a filled-in .env would give.
    const env: Record<string, string | undefined> = { ...process.env };
    for (const k of envExampleKeys) env[k] ??= "placeholder";
    const profiles = [[], ["--profile", "homeserver"]];
    if (spawnSync("docker", ["compose", "version"], { encoding: "utf8" }).status === 0) {
      for (const profile of profiles) {
        const r = spawnSync("docker", ["compose", "-f", "docker-compose.yml", "--env-file", ".env.example", ...profile, "config", "-q"], { cwd: repoDir, env, encoding: "utf8" });
        assert.equal(r.status, 0, `docker compose ${profile.join(" ")} config -q:\n${r.stderr}`);
      }
      return;
    }
    if (spawnSync("docker-compose", ["version"], { encoding: "utf8" }).status === 0) {
      // Debian's docker-compose 1.29 validates against its own schema, which predates two keys
      // used here (top-level `name`, `depends_on.<service>.required`): check a copy without them.
      const dir = mkdtempSync(join(tmpdir(), "compose-v1-"));
      try {
        writeFileSync(join(dir, "docker-compose.yml"), composeText.split("\n").filter((l) => !/^name:|^\s+required: false$/.test(l)).join("\n"));
        for (const profile of profiles) {
          const r = spawnSync("docker-compose", ["--env-file", join(repoDir, ".env.example"), ...profile, "config", "-q"], { cwd: dir, env, encoding: "utf8" });
          assert.equal(r.status, 0, `docker-compose (v1) ${profile.join(" ")} config -q:\n${r.stderr}`);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      t.diagnostic("checked with docker-compose v1 (no compose plugin here), without `name` and `depends_on.required`");
      return;
    }
    t.skip("neither `docker compose` (plugin) nor `docker-compose` is available here: checked by the YAML tests above only");
  });
});

describe("Dockerfile", () => {
  const lines = dockerfile.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const froms = lines.filter((l) => l.startsWith("FROM "));
  const lastFrom = lines.lastIndexOf(froms.at(-1)!);
  const runtime = lines.slice(lastFrom);

  test("is multi-stage on node:22-slim, the native module and the opencode binary installed in the builder", () => {
    assert.ok(froms.length >= 2, "at least two stages");
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:22-slim$/m);
    assert.ok(froms.every((f) => /^FROM \$\{NODE_IMAGE\} AS \w+$/.test(f)), `every stage on the Node image: ${froms.join("; ")}`);
    const builder = lines.slice(0, lastFrom);
    const copyVendor = builder.findIndex((l) => /^COPY vendor\b/.test(l));
    const install = builder.findIndex((l) => /^RUN npm (ci|install) --omit=dev/.test(l));
    assert.ok(copyVendor >= 0 && install > copyVendor, "vendor/ (the crypto stand-in of the overrides) is copied before the install");
    assert.ok(builder.some((l) => /^RUN .*apt-get install.*\bg\+\+/.test(l)), "the builder has a C++ toolchain for better-sqlite3");
    assert.ok(builder.some((l) => /better-sqlite3/.test(l) && /opencode --version/.test(l)), "the builder checks the native module and the binary");
    assert.ok(runtime.some((l) => /^COPY --from=builder \/app\/node_modules/.test(l)), "the runtime takes node_modules from the builder");
    assert.ok(runtime.some((l) => /opencode --version/.test(l)), "opencode is on PATH in the runtime image");
  });

  test("runs as a non-root user with data in a volume, a HEALTHCHECK on /health, and the built launcher", () => {
    const user = runtime.filter((l) => l.startsWith("USER ")).at(-1);
    assert.ok(user && !/^USER (root|0)(:|$)/.test(user), `a non-root USER in the runtime stage (${user ?? "none"})`);
    assert.ok(runtime.some((l) => /^VOLUME .*"\/data"/.test(l)), "VOLUME /data");
    assert.ok(runtime.some((l) => /^ENV .*BOT_DATABASE_PATH=\/data\//.test(l)), "the database is under /data");
    assert.ok(runtime.some((l) => /^ENV .*BOT_HTTP_HOST=0\.0\.0\.0/.test(l)), "the bot listens on all interfaces in the container");
    const health = runtime.find((l) => l.startsWith("HEALTHCHECK "));
    assert.match(health ?? "", /CMD \[.*"scripts\/healthcheck\.ts", "bot"\]/);
    assert.match(read("scripts/healthcheck.ts"), /\/health`/);
    assert.ok(runtime.includes('CMD ["node", "--disable-warning=ExperimentalWarning", "--disable-warning=DEP0060", "dist/bot/start.mjs"]'));
    assert.ok(runtime.some((l) => /^COPY --from=builder \/app\/dist \.\/dist/.test(l)), "the bundle and its launcher come from the builder");
    assert.ok(runtime.some((l) => /chown .*\/app\/dist\/bot\/code-cache/.test(l)), "the code cache is the one app directory the bot may write");
  });

  test("copies only what exists, and .dockerignore keeps secrets and local state out", () => {
    for (const l of lines.filter((x) => x.startsWith("COPY ") && !x.includes("--from="))) {
      const srcs = l.split(/\s+/).slice(1, -1).filter((w) => !w.startsWith("--"));
      for (const src of srcs) assert.ok(existsSync(join(repoDir, src)), `COPY ${src}: exists in the build context`);
    }
    const ignore = read(".dockerignore").split("\n").map((l) => l.trim());
    for (const entry of [".env", ".cache", "node_modules", ".git"]) assert.ok(ignore.includes(entry), `.dockerignore has ${entry}`);
  });
});
