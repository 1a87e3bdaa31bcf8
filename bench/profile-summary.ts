// Summarises a V8 CPU profile (`node --cpu-prof`): where the samples fall by package and by
// function (self time), and how much of the wall time the process was idle.
// Usage: node bench/profile-summary.ts <file.cpuprofile | dir> [--top N] [--until-ms MS]
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

export interface ProfileSummary {
  file: string;
  wallMs: number;
  idleMs: number;
  gcMs: number;
  byPackage: Array<[string, number]>;
  /** Samples charged to the outermost package on the stack: "loading matrix-bot-sdk" includes all it pulls in. */
  byOutermostPackage: Array<[string, number]>;
  byFunction: Array<[string, number]>;
}

/** "node_modules/matrix-bot-sdk/…" → "matrix-bot-sdk"; project files → "src/…" dir; node internals → "node:…". */
function packageOf(url: string): string {
  if (!url) return "(native/V8)";
  if (url.startsWith("node:")) return "node: internals";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1] ?? ""}` : (rest[0] ?? "?");
  }
  const m = /\/(src|test|bench)\/(.*)$/.exec(url);
  return m ? `${m[1]}/${m[2]?.split("/").slice(0, -1).join("/") || "."}` : url;
}

export function summarizeProfile(file: string, top = 15, untilMs = Number.POSITIVE_INFINITY): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const outermostCache = new Map<number, string>();
  const outermost = (id: number): string => {
    const hit = outermostCache.get(id);
    if (hit !== undefined) return hit;
    let found = "";
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const url = byId.get(cur)?.callFrame.url ?? "";
      if (url.includes("node_modules/") || /\/(src|test|bench)\//.test(url)) found = packageOf(url);
    }
    const name = found || packageOf(byId.get(id)?.callFrame.url ?? "");
    outermostCache.set(id, name);
    return name;
  };
  const self = new Map<number, number>();
  let t = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    t += dt;
    if (t > untilMs) break;
    const id = p.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const pkg = new Map<string, number>();
  const outer = new Map<string, number>();
  const fn = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === "(idle)") {
      idle += ms;
      continue;
    }
    if (functionName === "(garbage collector)") gc += ms;
    const k = packageOf(url);
    pkg.set(k, (pkg.get(k) ?? 0) + ms);
    const o = outermost(id);
    outer.set(o, (outer.get(o) ?? 0) + ms);
    const name = `${functionName || "(anonymous)"} ${url ? `${url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/(src|test|bench)\//, "$1/")}:${lineNumber + 1}` : ""}`;
    fn.set(name, (fn.get(name) ?? 0) + ms);
  }
  const sorted = (m: Map<string, number>): Array<[string, number]> =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k, Math.round(v * 10) / 10]);
  return {
    file,
    wallMs: Math.min((p.endTime - p.startTime) / 1000, untilMs),
    idleMs: Math.round(idle),
    gcMs: Math.round(gc),
    byPackage: sorted(pkg),
    byOutermostPackage: sorted(outer),
    byFunction: sorted(fn),
  };
}

if (process.argv[1] === import.meta.filename) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string" }, "until-ms": { type: "string" } } });
  const target = positionals[0];
  if (!target) {
    process.stderr.write("usage: node bench/profile-summary.ts <file.cpuprofile | dir> [--top N] [--until-ms MS]\n");
    process.exit(2);
  }
  const files = statSync(target).isDirectory()
    ? readdirSync(target).filter((f) => f.endsWith(".cpuprofile")).map((f) => join(target, f))
    : [target];
  for (const f of files) {
    const s = summarizeProfile(f, Number(values.top ?? 15), values["until-ms"] ? Number(values["until-ms"]) : Number.POSITIVE_INFINITY);
    process.stdout.write(`\n${s.file}\n  wall ${Math.round(s.wallMs)} ms, idle ${s.idleMs} ms, GC ${s.gcMs} ms, busy ${Math.round(s.wallMs - s.idleMs)} ms\n`);
    process.stdout.write("  self time by package:\n");
    for (const [k, v] of s.byPackage) process.stdout.write(`    ${String(v).padStart(8)} ms  ${k}\n`);
    process.stdout.write("  by outermost package on the stack (what caused the work):\n");
    for (const [k, v] of s.byOutermostPackage) process.stdout.write(`    ${String(v).padStart(8)} ms  ${k}\n`);
    process.stdout.write("  self time by function:\n");
    for (const [k, v] of s.byFunction) process.stdout.write(`    ${String(v).padStart(8)} ms  ${k}\n`);
  }
}
