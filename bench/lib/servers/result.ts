// What the servers phase reports: `phases.servers` of the result JSON (see report.ts).
import type { LoopLag } from "../bot.ts";
import type { CpuUse } from "../cpu.ts";
import type { Summary } from "../stats.ts";

/** One server's share of a round: its turns, what became of them, where their time went. */
export interface ServerTurns {
  server: string;
  n: number;
  lost: number;
  late: number;
  ackMs: Summary;
  finishMs: Summary;
  totalMs: Summary;
  errors: Record<string, number>;
  ackSplitMs: { bot: Summary; put: Summary; sync: Summary };
  finishSplitMs: { bot: Summary; put: Summary; sync: Summary };
}

export interface RoundCommon {
  sessions: number;
  words: number;
  wallMs: number;
  rssPeakMb: number;
  loopLag: LoopLag;
  cpu: CpuUse;
  requests: { total: number; rateLimited: number; perReply: number; byRoute: Record<string, number> };
}

export interface ServersPhase {
  rooms: number;
  servers: string[];
  /** Rooms per server (rooms of `default` are not bound: it is the rooms' default). */
  roomsPerServer: Record<string, number>;
  concurrency: number;
  /** Creating the rooms until the bot had joined the last one. */
  createMs: number;
  /** Binding the rooms of the other servers with `!oc server <name>`; each command → the bot's answer seen. */
  bindMs: number;
  bindCommandMs: Summary;
  bindFailures: number;
  /** The bot's homeserver requests while the rooms were created and bound (syncs included). */
  setupRequests: { total: number; rateLimited: number; perRoom: number; byRoute: Record<string, number> };
  /** CPU seconds while the rooms were created and bound. */
  setupCpu: CpuUse;
  idleRssMb: number;
  idleLoopLag: LoopLag;
  burst: RoundCommon & { lost: number; late: number; perServer: ServerTurns[] };
  outage: RoundCommon & {
    victim: string;
    /** Sessions on the killed server. */
    perVictim: number;
    /** Prompts sent → SIGKILL. */
    killAfterMs: number;
    /** The victim's sessions still streaming (busy in OpenCode) at the kill, and the words of each reply Alice had seen. */
    victimBusyAtKill: number;
    /** This round's sessions on the victim that OpenCode had already finished at the kill, and prompts it had not started. */
    victimDoneAtKill: number;
    /** Of the busy ones, those that had streamed text (the others were busy before their first word). */
    victimTextAtKill: number;
    victimNotStartedAtKill: number;
    victimWordsAtKill: Summary;
    /** Words the victim's OpenCode had emitted per session at the kill. */
    victimEmittedAtKill: Summary;
    /** Per victim thread: the kill → the "Lost the connection" notice in that thread seen by Alice. */
    noticeMs: Summary;
    /** The kill → the bot logs the server disconnected; the kill → each notice's PUT reaches the proxy; its PUT; → Alice's sync. */
    noticeSplitMs: { detect: number; toPut: Summary; put: Summary; sync: Summary };
    noticesSeen: number;
    noticesWithinTarget: number;
    /** Notices in rooms of the other servers (should be none). */
    falseNotices: number;
    others: ServerTurns[];
    othersLost: number;
    othersLate: number;
    /** The kill → the restarted server answering again. */
    downMs: number;
    /** Restart (same port, same state dir) → ready. */
    restartMs: number;
    /** From the server ready again: per victim thread, the "Reconnected" notice and the final version (with footer). */
    reconnectNoticeMs: Summary;
    reconnectNotices: number;
    victimFinalMs: Summary;
    victimFinals: number;
    victimFinishedBeforeKill: number;
    victimInterruptedNote: number;
    victimComplete: number;
    /** Finals with fewer words than Alice had already seen streaming before the kill. */
    victimFinalShorterThanSeen: number;
    /** Words in the victim threads' finals. */
    victimFinalWords: Summary;
    /** Per victim thread: OpenCode's words at the kill, Alice's, the notice, the final. */
    victimThreads: Array<{ emittedAtKill: number; shownAtKill: number; busyAtKill: boolean; noticeMs: number | null; reconnectMs: number | null; finalAfterBackMs: number | null; finalWords: number | null; interrupted: boolean; finalStart: string | null }>;
    /** Victim threads with no final 60 s after the server came back: what the bot's database, OpenCode and Alice show. */
    victimUnfinished: Array<Record<string, unknown>>;
    /** The bot's log of its connection to the victim from the kill on (ms after the kill): why reconnecting took what it took. */
    botConnectionLog: Array<{ atMs: number; msg: string; state?: unknown; attempt?: unknown; delayMs?: unknown; error?: unknown }>;
    /** New prompts in rooms of the victim once it is back. */
    afterReturn: { prompts: number; ok: number; totalMs: Summary };
  };
  restartWithRoomsMs: number;
  restartWithRoomsCpuMs: number;
  botWarnings: Record<string, number>;
}
