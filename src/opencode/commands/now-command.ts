import type { CommandSpec } from "../../commands/types.ts";
import { UsageError } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";

/** `now <message>`: interrupt the running step with this message, whatever the room's `busy` mode. */
export function nowCommand(oc: OpencodeBackend): CommandSpec {
  return {
    name: "now",
    args: "<message>",
    summary: "stop the running step and send this message next (in a `busy queue` room; there a plain message waits)",
    where: "thread",
    async run(ctx) {
      const text = ctx.args.trim();
      if (!text) throw new UsageError("Write the message after `now`.");
      const thread = ctx.thread as NonNullable<typeof ctx.thread>;
      const name = await oc.displayName(ctx.msg.roomId, ctx.msg.sender);
      const { queued } = await oc.interrupt(thread, { roomId: ctx.msg.roomId, eventId: ctx.msg.eventId, sender: ctx.msg.sender, text: `[${name}] ${text}` });
      if (queued > 0) await ctx.services.sender.react(ctx.msg.roomId, ctx.msg.eventId, "⏭️");
    },
  };
}
