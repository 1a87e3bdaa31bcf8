import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

export interface MatrixEvent {
  event_id: string; type: string; sender: string; room_id: string; origin_server_ts: number;
  content: Record<string, unknown>; unsigned?: Record<string, unknown>; state_key?: string;
}
/** receivedAt: performance.now() when the sync loop got it; receivedAtMs: Date.now() at the same moment. */
export type SeenEvent = MatrixEvent & { receivedAt: number; receivedAtMs: number };
export interface WaitForRoomEventOptions {
  roomId: string; type?: string; sender?: string; timeoutMs?: number; description?: string;
  match?: (e: MatrixEvent) => boolean;
  after?: number; // only events received at or after this performance.now() time
}

interface SyncRoom { timeline?: { events?: Array<Omit<MatrixEvent, "room_id">> } }
interface SyncRooms { join?: Record<string, SyncRoom>; leave?: Record<string, SyncRoom>; invite?: Record<string, unknown> }
interface SyncResponse { next_batch: string; rooms?: SyncRooms }
export interface SendTextOptions { threadRoot?: string; msgtype?: string; formattedBody?: string; mentions?: string[] }
export interface CreateRoomOptions { invite?: string[]; name?: string; encrypted?: boolean; powerLevelUsers?: Record<string, number> }

interface Chunk { chunk: MatrixEvent[]; next_batch?: string; end?: string }
interface RequestOptions { query?: Record<string, string>; signal?: AbortSignal; raw?: { data: Buffer; contentType: string } }

const DEFAULT_TIMEOUT_MS = 15_000;
// Initial sync only needs a `since` token; the loop then gets generous timelines so
// bursts from the bot are not cut off ("limited") between two polls.
const EMPTY = { types: [] as string[] };
const INITIAL_FILTER = JSON.stringify({ presence: EMPTY, account_data: EMPTY, room: { timeline: { limit: 1 }, ephemeral: EMPTY, account_data: EMPTY } });
const LOOP_FILTER = JSON.stringify({ presence: EMPTY, account_data: EMPTY, room: { timeline: { limit: 200 }, ephemeral: EMPTY, account_data: EMPTY } });
const enc = encodeURIComponent;
const relationsPath = (roomId: string, eventId: string, relType: string): string =>
  `/_matrix/client/v1/rooms/${enc(roomId)}/relations/${enc(eventId)}/${enc(relType)}`;

/** A scripted human: plain HTTP, no crypto, no SDK, so tests observe exactly what the server stored. */
export class MatrixTestUser {
  readonly userId: string;
  readonly #baseUrl: string;
  readonly #token: string;
  readonly #txnPrefix = `${Date.now().toString(36)}.${randomBytes(4).toString("hex")}`;
  #txnCounter = 0;
  readonly #seen = new Map<string, SeenEvent[]>();
  readonly #seenIds = new Set<string>();
  readonly #pendingInvites: string[] = [];
  readonly #knownInvites = new Set<string>();
  readonly #listeners = new Set<() => void>();
  #since: string | undefined;
  #syncAbort: AbortController | undefined;
  #syncLoop: Promise<void> | undefined;
  #lastSyncError: Error | undefined;
  #receiptReads = 0;

  constructor(baseUrl: string, user: { userId: string; accessToken: string }) {
    this.#baseUrl = baseUrl.replace(/\/+$/, "");
    this.userId = user.userId;
    this.#token = user.accessToken;
  }

  async #request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.#baseUrl + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}` };
    const contentType = opts.raw?.contentType ?? (body === undefined ? undefined : "application/json");
    if (contentType) headers["content-type"] = contentType;
    const payload = opts.raw?.data ?? (body === undefined ? undefined : JSON.stringify(body));
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(url, { method, headers, body: payload, signal: opts.signal });
      } catch (err) {
        // A keep-alive socket to a Synapse that was just restarted fails once; a
        // fresh connection then works. Sends are idempotent through their txn id.
        if (opts.signal?.aborted || attempt >= 4) throw err;
        await sleep(250 * attempt, undefined, { signal: opts.signal });
        continue;
      }
      const text = await res.text();
      if (res.status === 429 && attempt < 30) {
        // Suites may run against Synapse's default limits; the human must just wait.
        const bodyMs = /"retry_after_ms"\s*:\s*(\d+)/.exec(text)?.[1];
        const headerMs = Number(res.headers.get("retry-after")) * 1000;
        await sleep(bodyMs ? Number(bodyMs) : headerMs > 0 ? headerMs : 1000, undefined, { signal: opts.signal });
        continue;
      }
      if (!res.ok) throw new Error(`${method} ${path} failed: HTTP ${res.status} ${text}`);
      return (text ? JSON.parse(text) : {}) as T;
    }
  }

  #txnId(): string {
    return `${this.#txnPrefix}.${++this.#txnCounter}`;
  }

  /** After a stopSync(), resumes from the old token so nothing sent in between is missed. */
  async startSync(): Promise<void> {
    if (this.#syncLoop) return;
    if (this.#since === undefined) {
      const first = await this.#request<SyncResponse>("GET", "/_matrix/client/v3/sync", undefined, {
        query: { filter: INITIAL_FILTER, timeout: "0" },
      });
      this.#since = first.next_batch;
      this.#ingest(first, false);
    }
    const abort = new AbortController();
    this.#syncAbort = abort;
    this.#syncLoop = this.#runSyncLoop(abort.signal);
  }

  async #runSyncLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const res = await this.#request<SyncResponse>("GET", "/_matrix/client/v3/sync", undefined, {
          query: { filter: LOOP_FILTER, timeout: "10000", since: this.#since ?? "" },
          // Guards against a socket that silently died with the server.
          signal: AbortSignal.any([signal, AbortSignal.timeout(40_000)]),
        });
        this.#since = res.next_batch;
        this.#ingest(res, true);
      } catch (err) {
        if (signal.aborted) break;
        // Server restarts are part of the tests: keep polling until it is back.
        this.#lastSyncError = err instanceof Error ? err : new Error(String(err));
        await sleep(200, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  async stopSync(): Promise<void> {
    this.#syncAbort?.abort();
    await this.#syncLoop;
    this.#syncLoop = undefined;
    this.#syncAbort = undefined;
  }

  #ingest(res: SyncResponse, recordTimeline: boolean): void {
    const [receivedAt, receivedAtMs] = [performance.now(), Date.now()];
    for (const roomId of Object.keys(res.rooms?.invite ?? {})) {
      if (this.#knownInvites.has(roomId)) continue;
      this.#knownInvites.add(roomId);
      this.#pendingInvites.push(roomId);
    }
    for (const rooms of [res.rooms?.join, res.rooms?.leave]) {
      for (const [roomId, room] of Object.entries(rooms ?? {})) {
        this.#knownInvites.delete(roomId); // membership moved on, so a later re-invite counts again
        if (!recordTimeline) continue;
        let list = this.#seen.get(roomId);
        if (!list) this.#seen.set(roomId, (list = []));
        for (const ev of room.timeline?.events ?? []) {
          if (this.#seenIds.has(ev.event_id)) continue;
          this.#seenIds.add(ev.event_id);
          list.push({ ...ev, room_id: roomId, receivedAt, receivedAtMs });
        }
      }
    }
    for (const l of [...this.#listeners]) l();
  }

  async createRoom(opts: CreateRoomOptions = {}): Promise<string> {
    const body: Record<string, unknown> = { preset: "private_chat", invite: opts.invite ?? [] };
    if (opts.name !== undefined) body.name = opts.name;
    if (opts.encrypted) {
      body.initial_state = [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }];
    }
    if (opts.powerLevelUsers) {
      // Room v12 (Synapse's default) rejects creators in the users map: they rank above it.
      const users = Object.fromEntries(Object.entries(opts.powerLevelUsers).filter(([u]) => u !== this.userId));
      body.power_level_content_override = { users };
    }
    return (await this.#request<{ room_id: string }>("POST", "/_matrix/client/v3/createRoom", body)).room_id;
  }

  async joinRoom(roomIdOrAlias: string): Promise<string> {
    return (await this.#request<{ room_id: string }>("POST", `/_matrix/client/v3/join/${enc(roomIdOrAlias)}`, {})).room_id;
  }

  async inviteUser(roomId: string, userId: string): Promise<void> {
    await this.#request("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`, { user_id: userId });
  }

  async leaveRoom(roomId: string): Promise<void> {
    await this.#request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {});
  }

  async sendEvent(roomId: string, type: string, content: Record<string, unknown>): Promise<string> {
    const path = `/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/${enc(this.#txnId())}`;
    return (await this.#request<{ event_id: string }>("PUT", path, content)).event_id;
  }

  async sendText(roomId: string, body: string, opts: SendTextOptions = {}): Promise<string> {
    const content: Record<string, unknown> = { msgtype: opts.msgtype ?? "m.text", body };
    if (opts.formattedBody !== undefined) {
      content.format = "org.matrix.custom.html";
      content.formatted_body = opts.formattedBody;
    }
    if (opts.mentions) content["m.mentions"] = { user_ids: opts.mentions };
    if (opts.threadRoot) {
      // Spec'd fallback for thread-unaware clients: reply to the newest event in the thread.
      const latest = await this.#request<Chunk>("GET", relationsPath(roomId, opts.threadRoot, "m.thread"), undefined, {
        query: { limit: "1", dir: "b" },
      });
      const replyTo = latest.chunk[0]?.event_id ?? opts.threadRoot;
      content["m.relates_to"] = {
        rel_type: "m.thread", event_id: opts.threadRoot, is_falling_back: true, "m.in_reply_to": { event_id: replyTo },
      };
    }
    return this.sendEvent(roomId, "m.room.message", content);
  }

  async editText(roomId: string, eventId: string, newBody: string): Promise<string> {
    return this.sendEvent(roomId, "m.room.message", {
      msgtype: "m.text", body: `* ${newBody}`, "m.new_content": { msgtype: "m.text", body: newBody },
      "m.relates_to": { rel_type: "m.replace", event_id: eventId },
    });
  }

  /**
   * Registers an HTTP pusher, as a phone app does: the homeserver then sends this user's
   * notifications to `url` (a push gateway's `/_matrix/push/v1/notify`). `pushkey` names the
   * phone; the gateway sees it in each notification's `devices`.
   */
  async setHttpPusher(url: string, opts: { pushkey: string; appId?: string; format?: "event_id_only" }): Promise<void> {
    const data: Record<string, unknown> = { url };
    if (opts.format) data.format = opts.format;
    await this.#request("POST", "/_matrix/client/v3/pushers/set", {
      kind: "http",
      app_id: opts.appId ?? "org.example.test-phone",
      pushkey: opts.pushkey,
      app_display_name: "test phone",
      device_display_name: `${this.userId}'s phone`,
      lang: "en",
      data,
      append: false,
    });
  }

  async react(roomId: string, eventId: string, key: string): Promise<string> {
    return this.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: eventId, key } });
  }

  async uploadFile(data: Buffer, contentType: string, filename: string): Promise<string> {
    const res = await this.#request<{ content_uri: string }>("POST", "/_matrix/media/v3/upload", undefined, {
      query: { filename }, raw: { data, contentType },
    });
    return res.content_uri;
  }

  /** The bytes of an mxc:// URI, through the authenticated media API as a client downloads them. */
  async downloadFile(mxc: string): Promise<Buffer> {
    const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc);
    if (!m) throw new Error(`not an mxc URI: ${mxc}`);
    const res = await fetch(`${this.#baseUrl}/_matrix/client/v1/media/download/${enc(m[1] ?? "")}/${enc(m[2] ?? "")}`, {
      headers: { authorization: `Bearer ${this.#token}` },
    });
    if (!res.ok) throw new Error(`download of ${mxc} failed: HTTP ${res.status} ${await res.text()}`);
    return Buffer.from(await res.arrayBuffer());
  }

  /** A state event's content (e.g. a member's display name), as a client reads it. */
  async stateEvent(roomId: string, type: string, stateKey = ""): Promise<Record<string, unknown>> {
    return this.#request("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`);
  }

  /**
   * The room's read receipts now: event id → the users whose `m.read` receipt is on it. Read
   * from a one-off /sync of that room's ephemeral `m.receipt` events (there is no receipts
   * endpoint), apart from the sync loop.
   */
  async readReceipts(roomId: string): Promise<Map<string, string[]>> {
    const filter = JSON.stringify({
      presence: EMPTY, account_data: EMPTY,
      room: { rooms: [roomId], timeline: { limit: 1 }, state: EMPTY, account_data: EMPTY, ephemeral: { types: ["m.receipt"] } },
    });
    const res = await this.#request<{ rooms?: { join?: Record<string, { ephemeral?: { events?: Array<{ type: string; content: Record<string, Record<string, Record<string, unknown>>> }> } }> } }>(
      // Synapse caches a /sync answer by its parameters, timeout included (an initial sync
      // never waits for it): a new timeout per call gets a fresh answer.
      "GET", "/_matrix/client/v3/sync", undefined, { query: { filter, timeout: String(++this.#receiptReads) } },
    );
    const out = new Map<string, string[]>();
    for (const ev of res.rooms?.join?.[roomId]?.ephemeral?.events ?? []) {
      if (ev.type !== "m.receipt") continue;
      for (const [eventId, kinds] of Object.entries(ev.content)) {
        const readers = Object.keys(kinds["m.read"] ?? {});
        if (readers.length > 0) out.set(eventId, [...(out.get(eventId) ?? []), ...readers]);
      }
    }
    return out;
  }

  /** Who is typing in the room now (a one-off /sync of its ephemeral `m.typing`, as for receipts). */
  async typingUsers(roomId: string): Promise<string[]> {
    const filter = JSON.stringify({
      presence: EMPTY, account_data: EMPTY,
      room: { rooms: [roomId], timeline: { limit: 1 }, state: EMPTY, account_data: EMPTY, ephemeral: { types: ["m.typing"] } },
    });
    const res = await this.#request<{ rooms?: { join?: Record<string, { ephemeral?: { events?: Array<{ type: string; content: { user_ids?: string[] } }> } }> } }>(
      "GET", "/_matrix/client/v3/sync", undefined, { query: { filter, timeout: String(++this.#receiptReads) } },
    );
    return (res.rooms?.join?.[roomId]?.ephemeral?.events ?? []).filter((e) => e.type === "m.typing").flatMap((e) => e.content.user_ids ?? []);
  }

  /** Polls the room's read receipts until `userId`'s is on `eventId`. */
  async waitForReadReceipt(roomId: string, eventId: string, userId: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const receipts = await this.readReceipts(roomId);
      if (receipts.get(eventId)?.includes(userId)) return;
      if (performance.now() > deadline) {
        const where = [...receipts].filter(([, users]) => users.includes(userId)).map(([e]) => e);
        throw new Error(`${this.userId}: timed out after ${timeoutMs}ms waiting for ${userId}'s read receipt on ${eventId}; it is on ${where.join(", ") || "nothing"}`);
      }
      await sleep(200);
    }
  }

  async getEvent(roomId: string, eventId: string): Promise<MatrixEvent> {
    return this.#request<MatrixEvent>("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`);
  }

  async #allRelations(roomId: string, eventId: string, relType: string): Promise<MatrixEvent[]> {
    const out: MatrixEvent[] = [];
    let from: string | undefined;
    do {
      const query: Record<string, string> = { dir: "f", limit: "100" };
      if (from) query.from = from;
      const page = await this.#request<Chunk>("GET", relationsPath(roomId, eventId, relType), undefined, { query });
      out.push(...page.chunk.map((e) => ({ ...e, room_id: e.room_id ?? roomId })));
      from = page.next_batch;
    } while (from);
    return out;
  }

  threadEvents(roomId: string, rootId: string): Promise<MatrixEvent[]> {
    return this.#allRelations(roomId, rootId, "m.thread");
  }

  edits(roomId: string, eventId: string): Promise<MatrixEvent[]> {
    return this.#allRelations(roomId, eventId, "m.replace");
  }

  async latestBody(roomId: string, eventId: string): Promise<{ body: string; formattedBody?: string; editCount: number }> {
    const original = await this.getEvent(roomId, eventId);
    // Only the original sender may edit; anything else is ignored, as clients do.
    const valid = (await this.edits(roomId, eventId))
      .filter((e) => e.sender === original.sender && typeof e.content["m.new_content"] === "object" && e.content["m.new_content"]);
    // Spec: the newest edit wins, by origin_server_ts and then event_id.
    const newest = valid.toSorted((a, b) => a.origin_server_ts - b.origin_server_ts || (a.event_id < b.event_id ? -1 : 1)).at(-1);
    const content = newest ? (newest.content["m.new_content"] as Record<string, unknown>) : original.content;
    const body = typeof content.body === "string" ? content.body : "";
    const result: { body: string; formattedBody?: string; editCount: number } = { body, editCount: valid.length };
    if (typeof content.formatted_body === "string") result.formattedBody = content.formatted_body;
    return result;
  }

  async roomMessages(roomId: string, limit = 50): Promise<MatrixEvent[]> {
    const page = await this.#request<Chunk>("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages`, undefined, {
      query: { dir: "b", limit: String(limit) },
    });
    return page.chunk.map((e) => ({ ...e, room_id: e.room_id ?? roomId })).reverse();
  }

  seenEvents(roomId: string): SeenEvent[] {
    return [...(this.#seen.get(roomId) ?? [])];
  }

  /** Resolves from `check()` once it returns a value; re-checks after every sync batch. */
  #waitUntil<T>(check: () => T | undefined, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    const now = check();
    if (now !== undefined) return Promise.resolve(now);
    if (!this.#syncLoop) return Promise.reject(new Error(`${this.userId}: call startSync() before waiting for events`));
    return new Promise((resolve, reject) => {
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        this.#listeners.delete(listener);
        settle();
      };
      const listener = (): void => {
        try {
          const v = check();
          if (v !== undefined) finish(() => resolve(v));
        } catch (err) {
          finish(() => reject(err instanceof Error ? err : new Error(String(err))));
        }
      };
      const timer = setTimeout(() => finish(() => reject(onTimeout())), timeoutMs);
      this.#listeners.add(listener);
    });
  }

  waitForRoomEvent(opts: WaitForRoomEventOptions): Promise<SeenEvent> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const ok = (e: SeenEvent): boolean =>
      (opts.type === undefined || e.type === opts.type) && (opts.sender === undefined || e.sender === opts.sender)
      && (opts.after === undefined || e.receivedAt >= opts.after) && (opts.match === undefined || opts.match(e));
    return this.#waitUntil(() => this.#seen.get(opts.roomId)?.find(ok), timeoutMs, () => {
      const what = opts.description ?? `event${opts.type ? ` of type ${opts.type}` : ""}${opts.sender ? ` from ${opts.sender}` : ""}`;
      const last = (this.#seen.get(opts.roomId) ?? []).slice(-10).map((e) => `  ${e.type} ${e.sender} ${describeBody(e)}`);
      const syncErr = this.#lastSyncError ? `\nlast sync error: ${describeError(this.#lastSyncError)}` : "";
      return new Error(`${this.userId}: timed out after ${timeoutMs}ms waiting for ${what} in ${opts.roomId}. `
        + `Last ${last.length} events seen there:\n${last.join("\n") || "  (none)"}${syncErr}`);
    });
  }

  waitForInvite(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    return this.#waitUntil(() => this.#pendingInvites.shift(), timeoutMs,
      () => new Error(`${this.userId}: timed out after ${timeoutMs}ms waiting for an invite`));
  }
}

/** fetch() hides the useful part (ECONNREFUSED...) in `cause`. */
function describeError(err: Error): string {
  return err.cause instanceof Error ? `${err.message} (${err.cause.message})` : err.message;
}

function describeBody(e: MatrixEvent): string {
  const body = typeof e.content.body === "string" ? e.content.body : JSON.stringify(e.content);
  return JSON.stringify(body.length > 160 ? `${body.slice(0, 160)}…` : body);
}
