import { randomInt } from "node:crypto";

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
let lastMs = 0;
let counter = 0;

/**
 * An id in OpenCode's own ascending format (`msg_` + 12 hex digits of time×4096+counter + 14
 * random characters). The bot picks the id of each prompt itself, so that after a crash it can
 * ask the server whether that prompt arrived, and send it only if it did not.
 */
export function ascendingId(prefix: "msg" | "prt", now = Date.now()): string {
  if (now !== lastMs) {
    lastMs = now;
    counter = 0;
  }
  counter++;
  const value = (BigInt(now) * 0x1000n + BigInt(counter)) & 0xffffffffffffn;
  let random = "";
  for (let i = 0; i < 14; i++) random += base62[randomInt(62)];
  return `${prefix}_${value.toString(16).padStart(12, "0")}${random}`;
}
