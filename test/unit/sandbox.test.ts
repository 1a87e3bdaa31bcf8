import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bwrapArgs, bwrapWorks } from "../../src/process/sandbox.ts";

test("the sandbox binds the projects read-write and hides the bot's state on top of them", () => {
  const args = bwrapArgs({ writable: ["/srv/ws", "/srv/ws"], hiddenDirs: ["/srv/data"], hiddenFiles: ["/srv/config.yaml"] }, "/bin/opencode", ["serve"]);
  const text = args.join(" ");
  assert.match(text, /--die-with-parent --unshare-pid --ro-bind \/ \/ /);
  assert.equal(text.split("--bind /srv/ws /srv/ws").length, 2, "each writable directory once");
  assert.ok(text.indexOf("--bind /srv/ws") < text.indexOf("--tmpfs /srv/data"), "hidden mounts go on top");
  assert.match(text, /--ro-bind \/dev\/null \/srv\/config\.yaml -- \/bin\/opencode serve$/);
});

// The real thing, where bwrap is installed (.ci/run installs it): what a process inside can and cannot do.
test("inside the sandbox: the bot's files are gone, the workspace is writable, the rest read-only, the bot's pid invisible", { skip: bwrapWorks().ok ? false : "bwrap is not usable here" }, () => {
  const root = mkdtempSync(join(tmpdir(), "sandbox-unit-"));
  const ws = join(root, "ws");
  const data = join(root, "data");
  for (const d of [ws, data]) mkdirSync(d);
  // Somewhere outside /tmp (which the sandbox keeps writable) that anybody may write to: read-only inside.
  const other = mkdtempSync("/var/tmp/sandbox-unit-");
  writeFileSync(join(other, "readme"), "readable");
  writeFileSync(join(data, "bot.db"), "secret rows");
  writeFileSync(join(root, "config.yaml"), "accessToken: syt_secret");
  const script = [
    `cat ${data}/bot.db 2>/dev/null && echo LEAK-DB`,
    `cat ${root}/config.yaml 2>/dev/null | grep -q syt_secret && echo LEAK-CONFIG`,
    `echo hi > ${ws}/made && echo WROTE-WS`,
    `echo hi > ${other}/made 2>/dev/null && echo WROTE-OTHER`,
    `grep -q readable ${other}/readme && echo READ-OTHER`,
    `test -e /proc/${process.pid} && echo SEES-BOT`,
  ].join("; ");
  const r = spawnSync("bwrap", bwrapArgs({ writable: [ws], hiddenDirs: [data], hiddenFiles: [join(root, "config.yaml")] }, "sh", ["-c", script]), { encoding: "utf8" });
  rmSync(other, { recursive: true, force: true });
  rmSync(root, { recursive: true, force: true });
  assert.equal(r.stdout.trim().split("\n").join(" "), "WROTE-WS READ-OTHER");
});
