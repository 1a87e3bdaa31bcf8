// The benchmark's command line: its options, `--help`, and the configuration every phase reads
// (it also goes into the report as `config`, so its keys and their order are part of the JSON).
import { parseArgs } from "node:util";

const HELP = `npm run bench [-- options]
  --quick               small sizes (for development)
  --only a,b            phases: floor,relay,start,scale,servers,ratelimit (default: all)
  --window MS           the bot's edit window (default 1000, the bot's default)
  --floor-samples N     plain send→sync round trips (default 40)
  --relay-sessions N    sequential streamed replies for relay/ack/finish/cost (default 10)
  --relay-words N       words per relay reply, ≤200 (default 200: 4 s at 20 ms/token)
  --scale L1,L2,..      concurrent sessions per level (default 50,100,200)
  --scale-words N       words per reply at scale (default 60)
  --start-samples N     bot starts per kind (default 9)
  --servers-rooms N     servers phase: rooms bound round-robin to 3 OpenCode servers (default 1000)
  --servers-sessions N  servers phase: sessions at once per server (default 20)
  --servers-words N     servers phase: words per answer in the burst (default 60, ≤200)
  --servers-outage-words N  words per answer while one server is killed (default 200: 4 s at 20 ms/token, ≤200)
  --servers-concurrency N   room creations / binding commands in flight (default 16)
  --rate-words N        words of the answer under default rate limits (default 200)
  --rate-token-ms MS    token cadence of that answer (default 150: a 30 s answer)
  --late-ms MS          a final state later than this after the session went idle is "late" (default 10000)
  --scale-timeout-ms MS a reply at scale not final after this is "lost" (default 120000)
  --profile             write CPU profiles of the scale bot and of one start to bench/results/profiles
  --keep                keep the work directory
  --bot-env KEY=VALUE   extra environment for every bot process (repeatable), e.g. to try a setting
`;

/** Parses process.argv; prints the help and exits on `--help`. */
export function readBenchArgs() {
  const { values: args } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      only: { type: "string" }, // comma list of phases: floor,relay,start,scale,servers,ratelimit
      window: { type: "string" }, // BOT_EDIT_WINDOW_MS (default: the bot's default, 1000)
      "floor-samples": { type: "string" },
      "relay-sessions": { type: "string" },
      "relay-words": { type: "string" },
      scale: { type: "string" }, // e.g. 50,100,200
      "scale-words": { type: "string" },
      "start-samples": { type: "string" },
      "servers-rooms": { type: "string" },
      "servers-sessions": { type: "string" },
      "servers-words": { type: "string" },
      "servers-outage-words": { type: "string" },
      "servers-concurrency": { type: "string" },
      "rate-words": { type: "string" },
      "rate-token-ms": { type: "string" },
      "late-ms": { type: "string" },
      "scale-timeout-ms": { type: "string" },
      profile: { type: "boolean", default: false }, // --cpu-prof the scale bot and one start
      keep: { type: "boolean", default: false }, // keep the work dir
      "bot-env": { type: "string", multiple: true }, // KEY=VALUE for every bot (experiments)
    },
  });

  if (args.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }

  const quick = args.quick ?? false;
  const num = (v: string | undefined, full: number, small: number): number => (v !== undefined ? Number(v) : quick ? small : full);
  const cfg = {
    quick,
    windowMs: num(args.window, 1000, 1000),
    floorSamples: num(args["floor-samples"], 40, 10),
    relaySessions: num(args["relay-sessions"], 10, 2),
    relayWords: Math.min(200, num(args["relay-words"], 200, 100)),
    scaleLevels: (args.scale ?? (quick ? "10,20" : "50,100,200")).split(",").map(Number).filter((n) => n > 0),
    scaleWords: Math.min(200, num(args["scale-words"], 60, 30)),
    startSamples: num(args["start-samples"], 9, 2),
    serversRooms: num(args["servers-rooms"], 1000, 60),
    serversSessions: num(args["servers-sessions"], 20, 5),
    serversWords: Math.min(200, num(args["servers-words"], 60, 30)),
    serversOutageWords: Math.min(200, num(args["servers-outage-words"], 200, 200)),
    serversConcurrency: num(args["servers-concurrency"], 16, 16),
    rateWords: Math.min(200, num(args["rate-words"], 200, 60)),
    rateTokenMs: num(args["rate-token-ms"], 150, 150),
    tokenMs: 20, // the scripted model's default cadence, as in the tests
    lateMs: num(args["late-ms"], 10_000, 10_000),
    scaleTimeoutMs: num(args["scale-timeout-ms"], 120_000, 120_000),
    profile: args.profile ?? false,
    botEnv: Object.fromEntries((args["bot-env"] ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])),
  };
  const phases = new Set((args.only ?? "floor,relay,start,scale,servers,ratelimit").split(","));
  return { cfg, phases, keep: args.keep };
}

export type BenchConfig = ReturnType<typeof readBenchArgs>["cfg"];
