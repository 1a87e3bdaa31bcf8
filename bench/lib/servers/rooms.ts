// The servers phase's rooms: Alice creates them (1,000 by default) with the bot invited, binds
// them round-robin to the three servers with `!oc server <name>`, and the bot idles on them.
import { setTimeout as sleep } from "node:timers/promises";
import type { ProxyStats } from "../../counting-proxy.ts";
import type { LoopLag } from "../bot.ts";
import { CpuMeter, type CpuUse } from "../cpu.ts";
import { countBy, mapLimit } from "../lists.ts";
import { round } from "../stats.ts";
import type { ServersRig } from "./rig.ts";
import { rel } from "./turn.ts";

export interface ServersRooms {
  rooms: string[];
  roomsPerServer: Record<string, number>;
  createMs: number;
  bindMs: number;
  /** Per binding command: → the bot's answer seen; undefined when it failed. */
  bindTimes: Array<number | undefined>;
  bindFailures: number;
  /** The proxy's counts and the CPU while the rooms were created and bound. */
  setup: ProxyStats;
  setupCpuUse: CpuUse;
  idleLoopLag: LoopLag;
  idleRssMb: number;
  /** Hands out rooms of `server` not used by an earlier round. */
  takeRooms: (server: string, n: number) => string[];
}

export async function createAndBindRooms(rig: ServersRig): Promise<ServersRooms> {
  const { ctx, cfg, names, al, botUser, proxy, bot } = rig;
  const { stack, say } = ctx;
  // 1,000 rooms: Alice creates each (so she is its admin), the bot joins.
  await proxy.reset();
  const setupCpu = new CpuMeter({ bot: bot.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid });
  ctx.markLoad("servers-rooms", "start");
  say(`  creating ${cfg.rooms} rooms, ${cfg.concurrency} at a time`);
  let t0 = performance.now();
  let made = 0;
  const rooms = await mapLimit(Array.from({ length: cfg.rooms }, (_, i) => i), cfg.concurrency, async (i) => {
    const room = await al.createRoom({ name: `servers ${i}`, invite: [botUser] });
    await al.waitForRoomEvent({
      roomId: room, type: "m.room.member", timeoutMs: 180_000, description: "the bot joining",
      match: (e) => e.state_key === botUser && e.content.membership === "join",
    });
    if (++made % 250 === 0) say(`    ${made} rooms (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    return room;
  });
  const createMs = performance.now() - t0;
  say(`  ${rooms.length} rooms in ${(createMs / 1000).toFixed(1)} s`);

  // Round-robin: room i on names[i % 3]; rooms of `default` stay unbound (it is the rooms' default).
  const serverOfRoom = (i: number): string => names[i % names.length] as string;
  const roomsPerServer = countBy(rooms.map((_, i) => serverOfRoom(i)));
  t0 = performance.now();
  const toBind = rooms.flatMap((room, i) => (serverOfRoom(i) === "default" ? [] : [{ room, name: serverOfRoom(i) }]));
  const bindTimes = await mapLimit(toBind, cfg.concurrency, async ({ room, name }) => {
    const s = performance.now();
    try {
      const id = await al.sendText(room, `!oc server ${name}`);
      const answer = await al.waitForRoomEvent({
        roomId: room, sender: botUser, type: "m.room.message", timeoutMs: 60_000, description: `the answer to !oc server ${name}`,
        match: (e) => rel(e)["m.in_reply_to"]?.event_id === id && rel(e).rel_type !== "m.replace",
      });
      if (!String(answer.content.body).startsWith("🔀 New sessions in this room now start on the OpenCode server")) {
        say(`    binding ${room} to ${name}: ${String(answer.content.body).slice(0, 120)}`);
        return undefined;
      }
      return performance.now() - s;
    } catch (err) {
      say(`    binding ${room} to ${name} failed: ${String(err).split("\n")[0]}`);
      return undefined;
    }
  });
  const bindMs = performance.now() - t0;
  const bindFailures = bindTimes.filter((x) => x === undefined).length;
  ctx.markLoad("servers-rooms", "end");
  const setup = await proxy.reset();
  const setupCpuUse = setupCpu.stop();
  say(`  bound ${toBind.length - bindFailures}/${toBind.length} rooms in ${(bindMs / 1000).toFixed(1)} s (${bindFailures} failed)`);

  await sleep(3000);
  await bot.loopLag();
  await sleep(5000);
  const idleLoopLag = await bot.loopLag();
  const idleRssMb = round(bot.memory().rssMb);
  say(`  idle with ${rooms.length} rooms: RSS ${idleRssMb} MB, loop lag p99 ${round(idleLoopLag.lagP99Ms)} ms`);

  // Rooms not used yet, per server, in creation order.
  const unused = new Map<string, string[]>(names.map((n) => [n, rooms.filter((_, i) => serverOfRoom(i) === n)]));
  const takeRooms = (server: string, n: number): string[] => (unused.get(server) as string[]).splice(0, n);
  return { rooms, roomsPerServer, createMs, bindMs, bindTimes, bindFailures, setup, setupCpuUse, idleLoopLag, idleRssMb, takeRooms };
}
