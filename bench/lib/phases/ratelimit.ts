// ratelimit: a second Synapse with its default rate limits (the stack's are raised), its own
// scripted model and OpenCode, one long answer: does the bot's editing stay within the limits?
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MatrixTestUser } from "../../../test/harness/matrix-user.ts";
import { startTestOpencode } from "../../../test/harness/opencode.ts";
import { startScriptedModel } from "../../../test/harness/scripted-model.ts";
import { cacheDir } from "../../../test/harness/stack.ts";
import { startSynapse } from "../../../test/harness/synapse.ts";
import { ProxyProcess } from "../../counting-proxy.ts";
import { BenchBot } from "../bot.ts";
import type { BenchContext } from "../context.ts";
import { OpencodeEventRecorder } from "../oc-events.ts";
import { sessionIdOf } from "../observe-reply.ts";
import { routeSummary } from "../proxy-records.ts";
import { splitFooter, waitForFinal, waitForReply, type ReplyWatch } from "../replies.ts";
import type { RateLimitPhase } from "../report.ts";
import { round } from "../stats.ts";
import { waitForJoin } from "../wait-for-join.ts";
import { expectedWords } from "../words.ts";

/** Fills `report.phases.ratelimit`; an answer that never completes is reported, not thrown. */
export async function runRateLimitPhase(ctx: BenchContext): Promise<void> {
  const { cfg, say, markLoad, workDir, cleanups, logDir, report } = ctx;
  say(`ratelimit: second Synapse with default rate limits; one answer of ${cfg.rateWords} words at ${cfg.rateTokenMs} ms/token`);
  const rlDir = join(workDir, "ratelimit");
  mkdirSync(rlDir, { recursive: true });
  const [synapse2, model2] = await Promise.all([
    startSynapse({ cacheDir, workDir: rlDir, rateLimits: "default" }),
    startScriptedModel({ tokenDelayMs: cfg.rateTokenMs }),
  ]);
  const oc2 = await startTestOpencode({ workspaceDir: join(rlDir, "workspace"), stateDir: join(rlDir, "opencode-state"), modelBaseUrl: model2.baseUrl });
  cleanups.push(() => Promise.allSettled([oc2.stop(), synapse2.stop(), model2.close()]));
  const rec2 = new OpencodeEventRecorder(oc2.url, join(rlDir, "workspace"));
  await rec2.start();
  cleanups.push(() => rec2.stop());
  const [a2, b2] = [await synapse2.registerUser(`alice-rl`), await synapse2.registerUser(`bot-rl`)];
  const al2 = new MatrixTestUser(synapse2.baseUrl, a2);
  await al2.startSync();
  cleanups.push(() => al2.stopSync());
  const proxy = await ProxyProcess.start(synapse2.baseUrl);
  cleanups.push(() => proxy.stop());
  const dbPath = join(rlDir, "bot-state", "bot.db");
  const bot = await BenchBot.start({
    homeserverUrl: proxy.url, accessToken: b2.accessToken, allowedUsers: [a2.userId], databasePath: dbPath,
    opencodeUrl: oc2.url, workspaceDir: join(rlDir, "workspace"), editWindowMs: cfg.windowMs, extraEnv: cfg.botEnv,
  });
  const room = await al2.createRoom({ invite: [b2.userId] });
  await waitForJoin(al2, room, b2.userId);
  await proxy.reset();
  markLoad("ratelimit", "start");
  const sentAt = performance.now();
  const root = await al2.sendText(room, `!oc long ${cfg.rateWords}`);
  const w: ReplyWatch = { room, root, sentAt };
  let result: RateLimitPhase;
  try {
    const reply = await waitForReply(al2, b2.userId, w, 120_000);
    const final = await waitForFinal(al2, b2.userId, room, reply.event_id, 180_000);
    const sessionId = sessionIdOf(dbPath, root);
    const idleAt = sessionId ? rec2.sessions.get(sessionId)?.idleAt : undefined;
    const latest = await al2.latestBody(room, reply.event_id);
    await sleep(1000);
    const counts = await proxy.reset();
    const exact = splitFooter(latest.body).text === expectedWords(cfg.rateWords);
    result = {
      exact,
      lost: exact ? 0 : 1,
      edits: latest.editCount,
      streamMs: round(cfg.rateWords * cfg.rateTokenMs, 0),
      totalMs: round(final.receivedAt - sentAt, 0),
      finishMs: idleAt === undefined ? null : round(final.receivedAt - idleAt, 0),
      requests: { total: counts.requests, rateLimited: counts.rateLimited, ...routeSummary(counts), byRoute: counts.byRoute, byStatus: counts.byStatus },
      botRateLimitWarnings: bot.logLines((l) => /rate limit/i.test(String(l.msg))).length,
    };
  } catch (err) {
    result = { exact: false, lost: 1, error: String(err).split("\n")[0] };
  }
  markLoad("ratelimit", "end");
  await bot.stop(join(logDir, "ratelimit-bot.log"));
  report.phases.ratelimit = result;
}
