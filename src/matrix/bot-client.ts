import { MatrixClient, type IStorageProvider } from "matrix-bot-sdk";
import { addSecret } from "../log.ts";
import type { KeyValue } from "../store/key-value.ts";
import { RequestLanes } from "./request-lanes.ts";

/** The long-polling sync: it keeps the SDK's own timeouts (40 s, 10 min for the first). */
const syncEndpoint = /\/sync$/;

/** A request the homeserver did not answer within `matrix.requestTimeoutMs`. */
export class HomeserverTimeoutError extends Error {
  override name = "HomeserverTimeoutError";
  /** As the `request` library named it (ETIMEDOUT, ESOCKETTIMEDOUT). */
  readonly code: string;
  constructor(message: string, code: string, cause: unknown) {
    super(message, { cause });
    this.code = code;
  }
}

/**
 * matrix-bot-sdk's client, saving the sync token only after a sync's events were handed to the
 * bot (the default saves it before, which can skip events when the process dies in between).
 * Every request but the sync must be answered within `requestTimeoutMs` (the SDK's own default
 * is 60 s, and none for media downloads): a hung homeserver fails the call, the room goes on.
 * Those requests take turns by importance (request-lanes.ts); the sync never waits.
 */
export class DurableMatrixClient extends MatrixClient {
  /** When the last sync request succeeded, for /health. */
  lastSyncAt = 0;
  lastSyncError: string | undefined;
  readonly requestTimeoutMs: number;
  /** Every request but the sync waits here for its turn (request-lanes.ts). */
  readonly lanes: RequestLanes;

  /** Sees each sync response as it came (display names learn the rooms' members from it). A throw is the caller's to avoid. */
  onSyncResponse: ((res: unknown) => void) | undefined;
  /** The account's user ID when the start has already asked the homeserver (whoami): not asked twice. */
  private readonly knownUserId: string | undefined;

  constructor(homeserverUrl: string, accessToken: string, storage: IStorageProvider, opts: { requestTimeoutMs?: number; maxConcurrentRequests?: number; userId?: string } = {}) {
    super(homeserverUrl, accessToken, storage);
    this.knownUserId = opts.userId;
    this.persistTokenAfterSync = true;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.lanes = new RequestLanes({ maxInFlight: opts.maxConcurrentRequests ?? 6 });
  }

  override getUserId(): Promise<string> {
    return this.knownUserId === undefined ? super.getUserId() : Promise.resolve(this.knownUserId);
  }

  // The SDK's signature (loosely typed there). The `request` library's timeout is the wait for
  // the connection and the answer's headers, then for each further piece of the answer.
  override async doRequest(method: string, endpoint: string, qs?: unknown, body?: unknown, timeout?: number, raw?: boolean, contentType?: string, noEncoding?: boolean): Promise<unknown> {
    const sync = syncEndpoint.test(endpoint);
    const limit = sync ? timeout : this.requestTimeoutMs;
    const request = async (): Promise<unknown> => (await super.doRequest(method, endpoint, qs, body, limit, raw, contentType, noEncoding)) as unknown;
    try {
      return await (sync ? request() : this.lanes.run(request));
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (sync || (code !== "ETIMEDOUT" && code !== "ESOCKETTIMEDOUT")) throw err;
      throw new HomeserverTimeoutError(`the homeserver did not answer within ${Math.round(this.requestTimeoutMs / 100) / 10} s (${method} ${endpoint.split("?")[0]})`, code, err);
    }
  }

  // The SDK's own signature types the token and result loosely.
  protected override async doSync(token: string): Promise<unknown> {
    try {
      const res: unknown = await super.doSync(token);
      this.lastSyncAt = Date.now();
      this.lastSyncError = undefined;
      // Before the SDK hands the events on: what a response carries (room state) is known to the handlers.
      this.onSyncResponse?.(res);
      return res;
    } catch (err) {
      this.lastSyncError = (err as Error).message;
      throw err;
    }
  }
}

export interface Credentials {
  homeserverUrl: string;
  accessToken?: string | undefined;
  userId?: string | undefined;
  password?: string | undefined;
  deviceName: string;
}

/** A password login: the new access token. */
export type PasswordLogin = (creds: Credentials) => Promise<string>;

/**
 * The access token to use: the configured one, or one from a password login (`login`), kept so a
 * restart does not log in again.
 */
export async function resolveAccessToken(creds: Credentials, kv: KeyValue, login: PasswordLogin): Promise<string> {
  if (creds.accessToken !== undefined) return creds.accessToken;
  const key = `matrix.login.${creds.userId ?? ""}`;
  const saved = kv.get(key);
  if (saved !== undefined) {
    addSecret(saved);
    const probe = new MatrixClient(creds.homeserverUrl, saved);
    try {
      await probe.getWhoAmI();
      return saved;
    } catch {
      kv.delete(key);
    }
  }
  const accessToken = await login(creds);
  // Known to the log scrubber before anything else can log it.
  addSecret(accessToken);
  kv.set(key, accessToken);
  return accessToken;
}
