import type { IFilterInfo, IStorageProvider } from "matrix-bot-sdk";
import type { Db } from "./db.ts";
import { KeyValue } from "./key-value.ts";

/** matrix-bot-sdk storage in the bot's SQLite file, so the sync token survives with everything else. */
export class SqliteSyncStorage implements IStorageProvider {
  private readonly kv: KeyValue;

  constructor(db: Db) {
    this.kv = new KeyValue(db);
  }

  setSyncToken(token: string | null): void {
    if (token === null) this.kv.delete("matrix.sync_token");
    else this.kv.set("matrix.sync_token", token);
  }

  getSyncToken(): string | null {
    return this.kv.get("matrix.sync_token") ?? null;
  }

  setFilter(filter: IFilterInfo): void {
    this.kv.set("matrix.filter", JSON.stringify(filter));
  }

  getFilter(): IFilterInfo {
    const raw = this.kv.get("matrix.filter");
    // The SDK treats a falsy filter as "none stored yet".
    return (raw === undefined ? null : JSON.parse(raw)) as IFilterInfo;
  }

  storeValue(key: string, value: string): void {
    this.kv.set(`matrix.kv.${key}`, value);
  }

  readValue(key: string): string | null | undefined {
    return this.kv.get(`matrix.kv.${key}`);
  }
}
