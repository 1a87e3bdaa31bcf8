// Boots the test servers once and keeps them running, for working on one e2e file at a time:
//   node test/harness/dev-stack.ts /tmp/devstack [--letta]      (prints when ready; Ctrl-C stops)
//   TEST_STACK_FILE=/tmp/devstack/stack.json node --test test/e2e/<file>.test.ts
// `npm test` stays the one command that CI and the README use.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { bootStack, writeStackInfo } from "./stack.ts";

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: node test/harness/dev-stack.ts <work dir> [--letta]\n");
  process.exit(2);
}
mkdirSync(dir, { recursive: true });
const stack = await bootStack(dir, { letta: process.argv.includes("--letta"), log: (l) => process.stdout.write(`${l}\n`) });
const file = join(dir, "stack.json");
writeStackInfo(file, stack.info);
process.stdout.write(`ready: TEST_STACK_FILE=${file}\n`);
const stop = (): void => void stack.stop().then(() => process.exit(0));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
