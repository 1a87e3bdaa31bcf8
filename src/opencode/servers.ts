// The configured OpenCode servers by name, and which one a room or a thread is on: a room is bound
// with `!oc server <name>` (else the rooms' default), a thread stays on the server its session
// was made on, whatever the room does later. One server down touches only its rooms and threads.
import type { BackendHealth } from "../commands/backend.ts";
import { primaryServerName } from "../config/opencode-servers.ts";
import type { RoomStore } from "../store/rooms.ts";
import type { ThreadRow } from "../store/threads.ts";
import { serverOfThread } from "./server-scope.ts";
import type { ServerUnit } from "./server-unit.ts";

/** A room or thread on a server that is no longer configured: said in words where it was asked. */
export class UnknownServerError extends Error {
  override name = "UnknownServerError";
}

export class OpencodeServers {
  /** Every server, `default` first. */
  readonly all: ServerUnit[];
  /** The server of opencode.serverUrl (or the embedded one): delegations from Letta run there. */
  readonly primary: ServerUnit;
  /** Where rooms without a binding start their sessions. */
  readonly roomDefault: ServerUnit;
  private readonly byName: Map<string, ServerUnit>;
  private readonly rooms: RoomStore;
  private readonly prefix: string;

  constructor(units: ServerUnit[], rooms: RoomStore, prefix: string, defaultName = primaryServerName) {
    this.all = units;
    this.byName = new Map(units.map((u) => [u.name, u]));
    const primary = this.byName.get(primaryServerName);
    if (!primary) throw new Error(`no OpenCode server named ${primaryServerName}`);
    this.primary = primary;
    this.roomDefault = this.byName.get(defaultName) ?? primary;
    this.rooms = rooms;
    this.prefix = prefix;
  }

  /** More than one server is configured (the chat then names them). */
  get several(): boolean {
    return this.all.length > 1;
  }

  get(name: string): ServerUnit | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return this.all.map((u) => u.name);
  }

  /** The name of the server a room's new sessions start on. */
  roomServerName(roomId: string): string {
    return this.rooms.settings(roomId).opencodeServer ?? this.roomDefault.name;
  }

  /** True when the room has a binding of its own (`!oc server <name>`), not the rooms' default. */
  roomIsBound(roomId: string): boolean {
    return this.rooms.settings(roomId).opencodeServer !== null;
  }

  ofRoom(roomId: string): ServerUnit {
    const name = this.roomServerName(roomId);
    const unit = this.byName.get(name);
    if (!unit) throw new UnknownServerError(`this room is bound to the OpenCode server \`${name}\`, which is not configured any more; \`${this.prefix} server <name>\` binds it to another (${this.list()})`);
    return unit;
  }

  ofThread(thread: Pick<ThreadRow, "server">): ServerUnit {
    const name = serverOfThread(thread);
    const unit = this.byName.get(name);
    if (!unit) throw new UnknownServerError(`this thread's session is on the OpenCode server \`${name}\`, which is not configured any more (opencode.servers); start a new session at the top level`);
    return unit;
  }

  /** What a thread row stores for a server: null for `default` (as every row from before several servers). */
  threadColumn(unit: ServerUnit): string | null {
    return unit.name === primaryServerName ? null : unit.name;
  }

  /** Binds a room to a server (null: back to the rooms' default). */
  bind(roomId: string, name: string | null): void {
    this.rooms.set(roomId, "opencodeServer", name);
  }

  list(): string {
    return this.names().map((n) => `\`${n}\``).join(", ");
  }

  /** One entry of GET /health per server, under `opencode`. */
  health(): BackendHealth[] {
    return this.all.map((u) => {
      const c = u.conn;
      return {
        name: "opencode",
        section: "opencode",
        ok: c.state === "connected",
        server: u.name,
        ...(u === this.roomDefault && this.several ? { default: true } : {}),
        url: c.url,
        state: c.state,
        reconnects: c.reconnects,
        error: c.lastError ?? null,
        ...(this.several ? { version: u.version ?? null, activeTurns: u.runner.activeCount } : {}),
      };
    });
  }

  activeTurns(): number {
    return this.all.reduce((n, u) => n + u.runner.activeCount, 0);
  }

  async start(): Promise<void> {
    await Promise.all(this.all.map((u) => u.lifecycle.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((u) => u.lifecycle.stop()));
  }

  async reconcile(): Promise<void> {
    await Promise.all(this.all.map((u) => u.lifecycle.reconcile()));
  }

  /**
   * Scheduled prompts may go: the server `default` is connected and recovered (as with one server),
   * and every other server that is connected has recovered its turns. A server that is away does
   * not hold the others back; a prompt for it fails there, and says so.
   */
  ready(): boolean {
    return this.primary.lifecycle.ready() && this.all.every((u) => u.conn.state !== "connected" || u.lifecycle.ready());
  }
}
