import type { Statement } from "better-sqlite3";
import type { Db } from "./db.ts";

export class KeyValue {
  private readonly getStmt: Statement<[string], { value: string }>;
  private readonly setStmt: Statement<[string, string]>;
  private readonly delStmt: Statement<[string]>;

  constructor(db: Db) {
    this.getStmt = db.prepare("SELECT value FROM kv WHERE key = ?");
    this.setStmt = db.prepare("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    this.delStmt = db.prepare("DELETE FROM kv WHERE key = ?");
  }

  get(key: string): string | undefined {
    return this.getStmt.get(key)?.value;
  }

  set(key: string, value: string): void {
    this.setStmt.run(key, value);
  }

  delete(key: string): void {
    this.delStmt.run(key);
  }

  /** Returns the stored value, storing `value` first if the key is new. */
  getOrSet(key: string, value: string): string {
    const existing = this.get(key);
    if (existing !== undefined) return existing;
    this.set(key, value);
    return value;
  }
}
