// The floor every bot message is measured against: a plain client's send (or an edit shaped like
// the bot's) seen through a second client's sync, in a quiet room, or again and again while the
// bot works (FloorProbe).
import { setTimeout as sleep } from "node:timers/promises";
import type { MatrixTestUser } from "../../test/harness/matrix-user.ts";
import { expectedWords } from "./words.ts";

export interface RoundTrip {
  /** send → the event in the second client's sync */
  ms: number;
  /** send → the PUT answered */
  putMs: number;
}

/** A thread reply to edit, for round trips with edits shaped like the bot's. */
export async function editTarget(sender: MatrixTestUser, room: string, tag: string): Promise<string> {
  const root = await sender.sendText(room, `${tag} root`);
  return sender.sendEvent(room, "m.room.message", {
    msgtype: "m.notice", body: "⏳ Working…", "m.mentions": {},
    "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } },
  });
}

/** With `editOf`: instead of a plain message, an edit of that event shaped like the bot's (HTML, 20–200 words). */
export async function floorRoundTrips(
  sender: MatrixTestUser, receiver: MatrixTestUser, room: string, n: number, tag: string, editOf?: string, warmup = 3,
): Promise<RoundTrip[]> {
  const out: RoundTrip[] = [];
  for (let i = 0; i < n + warmup; i++) {
    const t0 = performance.now();
    const id = editOf
      ? await sender.sendEvent(room, "m.room.message", editLike(editOf, expectedWords(20 + ((i * 5) % 180))))
      : await sender.sendText(room, `${tag} ${i}`);
    const putMs = performance.now() - t0;
    const seen = await receiver.waitForRoomEvent({ roomId: room, match: (e) => e.event_id === id, timeoutMs: 15_000 });
    if (i >= warmup) out.push({ ms: seen.receivedAt - t0, putMs }); // the first ones warm up connections and caches
    if (n > 1) await sleep(100);
  }
  return out;
}

function editLike(eventId: string, text: string): Record<string, unknown> {
  const html = `<p>${text}</p>`;
  const content = { msgtype: "m.notice", body: text, format: "org.matrix.custom.html", formatted_body: html, "m.mentions": {} };
  return {
    ...content, body: `* ${text}`, formatted_body: `* ${html}`,
    "m.new_content": content, "m.relates_to": { rel_type: "m.replace", event_id: eventId },
  };
}

/**
 * The floor measured again while the bot works: a plain edit every 500 ms in a room of its own,
 * so that the relay can be compared with what any client gets from this Synapse at the same moment.
 */
export class FloorProbe {
  readonly samples: Array<RoundTrip & { at: number }> = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(a: MatrixTestUser, b: MatrixTestUser, room: string) {
    this.loop = (async () => {
      const target = await editTarget(a, room, "probe");
      while (this.running) {
        const at = performance.now();
        const [rt] = await floorRoundTrips(a, b, room, 1, "probe", target, 0).catch(() => [] as RoundTrip[]);
        if (rt !== undefined) this.samples.push({ at, ...rt });
        await sleep(400);
      }
    })();
  }

  async stop(): Promise<Array<RoundTrip & { at: number }>> {
    this.running = false;
    await this.loop;
    return this.samples;
  }
}
