// The bot answers an invite by joining; a phase uses a room only once Alice's sync shows that join.
import type { MatrixTestUser } from "../../test/harness/matrix-user.ts";

export async function waitForJoin(user: MatrixTestUser, room: string, who: string, timeoutMs = 60_000): Promise<void> {
  await user.waitForRoomEvent({
    roomId: room,
    type: "m.room.member",
    match: (e) => e.state_key === who && e.content.membership === "join",
    description: `${who} joining`,
    timeoutMs,
  });
}
