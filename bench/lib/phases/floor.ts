// floor: a plain client's send, seen through a second client's sync. Also run for the relay
// phase alone, which keeps measuring it (FloorProbe) in the pair's room while the bot streams.
import { MatrixTestUser } from "../../../test/harness/matrix-user.ts";
import { ProxyProcess } from "../../counting-proxy.ts";
import type { BenchContext } from "../context.ts";
import { editTarget, floorRoundTrips } from "../round-trips.ts";
import { summarize } from "../stats.ts";

/** Two plain clients in a room of their own, for FloorProbe during the relay phase. */
export interface FloorPair {
  a: MatrixTestUser;
  b: MatrixTestUser;
  room: string;
}

/** Fills `report.phases.floor`; the p50/p99 go into the report's `floor` too. */
export async function runFloorPhase(ctx: BenchContext): Promise<{ p50: number; p99: number; pair: FloorPair }> {
  const { cfg, say, markLoad, reg, hs, cleanups, report } = ctx;
  say("floor: plain send → Synapse → second client's sync");
  markLoad("floor", "start");
  const [fa, fb] = await Promise.all([reg("floor-a"), reg("floor-b")]);
  const a = new MatrixTestUser(hs, fa);
  const b = new MatrixTestUser(hs, fb);
  await Promise.all([a.startSync(), b.startSync()]);
  const room = await a.createRoom({ invite: [fb.userId] });
  await b.joinRoom(room);
  const floorPair: FloorPair = { a, b, room };
  const direct = await floorRoundTrips(a, b, room, cfg.floorSamples, "floor");
  const edits = await floorRoundTrips(a, b, room, cfg.floorSamples, "floor-edit", await editTarget(a, room, "floor-edit"));
  // The same through the counting proxy the bot talks through, to show what the proxy adds.
  const proxy = await ProxyProcess.start(hs);
  const viaProxy = new MatrixTestUser(proxy.url, fa);
  const proxied = await floorRoundTrips(viaProxy, b, room, Math.max(5, Math.round(cfg.floorSamples / 2)), "floor-proxy");
  await proxy.stop();
  cleanups.push(() => Promise.all([a.stopSync(), b.stopSync()]));
  const s = summarize(direct.map((x) => x.ms));
  report.phases.floor = {
    roundTripMs: s,
    putMs: summarize(direct.map((x) => x.putMs)),
    editRoundTripMs: summarize(edits.map((x) => x.ms)),
    editPutMs: summarize(edits.map((x) => x.putMs)),
    viaCountingProxyMs: summarize(proxied.map((x) => x.ms)),
  };
  say(`  floor p50 ${s.p50} ms, p99 ${s.p99} ms`);
  markLoad("floor", "end");
  return { p50: s.p50, p99: s.p99, pair: floorPair };
}
