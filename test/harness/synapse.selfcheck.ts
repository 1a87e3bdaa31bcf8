// Proves the e2e harness itself works before any bot test relies on it:
//   node --disable-warning=ExperimentalWarning --test test/harness/synapse.selfcheck.ts
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { MatrixTestUser } from "./matrix-user.ts";
import { registerUser, startSynapse, type SynapseHandle } from "./synapse.ts";

const cacheDir = resolve(import.meta.dirname, "../../.cache");
const t0 = performance.now();
const elapsed = (): string => `${Math.round(performance.now() - t0)}ms`;
let workDir = "";
let synapse: SynapseHandle | undefined;
const users: MatrixTestUser[] = [];
let passed = false;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), "synapse-selfcheck-"));
  synapse = await startSynapse({ cacheDir, workDir, log: (l) => console.log(`[${elapsed()}] ${l}`) });
});

after(async () => {
  for (const u of users) await u.stopSync();
  await synapse?.stop();
  // Keep the data dir of a failed run for inspection.
  if (passed) await rm(workDir, { recursive: true, force: true });
  else console.log(`keeping ${workDir} for inspection`);
  console.log(`[${elapsed()}] self-check finished`);
});

void test("two humans talk in a thread, edits apply, sync survives a restart", async () => {
  assert.ok(synapse);
  const hs = synapse;
  const aliceAccount = await hs.registerUser("alice", { admin: true });
  // The standalone form is what test files in other processes use.
  const bobAccount = await registerUser(hs.baseUrl, hs.sharedSecret, "bob");
  await hs.exemptFromRateLimits(bobAccount.userId);
  assert.equal(aliceAccount.userId, "@alice:localhost");
  const alice = new MatrixTestUser(hs.baseUrl, aliceAccount);
  const bob = new MatrixTestUser(hs.baseUrl, bobAccount);
  users.push(alice, bob);
  await bob.startSync();

  const roomId = await alice.createRoom({ invite: [bob.userId], name: "selfcheck", powerLevelUsers: { [bob.userId]: 50 } });
  assert.equal(await bob.waitForInvite(10_000), roomId);
  assert.equal(await bob.joinRoom(roomId), roomId);

  const rootId = await alice.sendText(roomId, "root message");
  const reply1 = await alice.sendText(roomId, "first reply", { threadRoot: rootId });
  const reply2 = await alice.sendText(roomId, "second reply", { threadRoot: rootId, mentions: [bob.userId] });
  const editId = await alice.editText(roomId, reply2, "second reply (edited)");

  const seenEdit = await bob.waitForRoomEvent({
    roomId, sender: alice.userId, type: "m.room.message", description: "alice's edit",
    match: (e) => e.event_id === editId,
  });
  assert.ok(seenEdit.receivedAt > 0);
  const seenReply = await bob.waitForRoomEvent({ roomId, match: (e) => e.event_id === reply2, timeoutMs: 1 });
  const rel = seenReply.content["m.relates_to"] as Record<string, unknown>;
  assert.deepEqual(rel, {
    rel_type: "m.thread", event_id: rootId, is_falling_back: true, "m.in_reply_to": { event_id: reply1 },
  });

  const thread = await bob.threadEvents(roomId, rootId);
  assert.deepEqual(thread.map((e) => e.event_id), [reply1, reply2]);
  assert.ok(thread.every((e) => e.room_id === roomId));
  assert.deepEqual(await bob.latestBody(roomId, reply2), { body: "second reply (edited)", editCount: 1 });
  assert.deepEqual(await bob.latestBody(roomId, reply1), { body: "first reply", editCount: 0 });
  // An edit by someone else than the sender must not count.
  await bob.editText(roomId, reply1, "hijacked");
  assert.equal((await alice.latestBody(roomId, reply1)).body, "first reply");

  const mxc = await alice.uploadFile(Buffer.from("hello"), "text/plain", "hello.txt");
  assert.match(mxc, /^mxc:\/\/localhost\//);
  const reactionId = await bob.react(roomId, rootId, "👍");
  const history = await alice.roomMessages(roomId, 20);
  assert.equal(history.at(-1)?.event_id, reactionId);
  assert.ok(history.findIndex((e) => e.event_id === rootId) < history.findIndex((e) => e.event_id === reply1));

  const timeout = await bob.waitForRoomEvent({ roomId, type: "m.never", timeoutMs: 200, description: "nothing" }).catch((e: unknown) => e);
  assert.ok(timeout instanceof Error);
  assert.match(timeout.message, /waiting for nothing/);
  assert.match(timeout.message, /second reply \(edited\)/);

  // Events sent while not syncing are picked up when syncing resumes.
  await bob.stopSync();
  const whileStopped = await alice.sendText(roomId, "while bob was away");
  await bob.startSync();
  await bob.waitForRoomEvent({ roomId, match: (e) => e.event_id === whileStopped, description: "message sent during stopSync" });

  const oldPid = hs.pid;
  const restartStart = performance.now();
  await hs.restart();
  console.log(`[${elapsed()}] restart took ${Math.round(performance.now() - restartStart)}ms`);
  assert.notEqual(hs.pid, oldPid);

  const mark = performance.now();
  const afterRestart = await alice.sendText(roomId, "after restart", { threadRoot: rootId });
  const seen = await bob.waitForRoomEvent({ roomId, after: mark, description: "message after restart", timeoutMs: 20_000 });
  assert.equal(seen.event_id, afterRestart);
  assert.equal((await alice.getEvent(roomId, afterRestart)).content.body, "after restart");
  assert.equal(bob.seenEvents(roomId).filter((e) => e.event_id === afterRestart).length, 1);

  for (const u of users) await u.stopSync();
  const pid = hs.pid;
  await hs.stop();
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
  passed = true;
});
