import { MatrixClient, type IStorageProvider } from "matrix-bot-sdk";
import { addSecret } from "../log.ts";
import type { KeyValue } from "../store/key-value.ts";

/**
 * matrix-bot-sdk's client, saving the sync token only after a sync's events were handed to the
 * bot (the default saves it before, which can skip events when the process dies in between).
 */
export class DurableMatrixClient extends MatrixClient {
  /** When the last sync request succeeded, for /health. */
  lastSyncAt = 0;
  lastSyncError: string | undefined;

  constructor(homeserverUrl: string, accessToken: string, storage: IStorageProvider) {
    super(homeserverUrl, accessToken, storage);
    this.persistTokenAfterSync = true;
  }

  // The SDK's own signature types the token and result loosely.
  protected override async doSync(token: string): Promise<unknown> {
    try {
      const res: unknown = await super.doSync(token);
      this.lastSyncAt = Date.now();
      this.lastSyncError = undefined;
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
