// Container health probe (the images have no curl): exits 0 when the endpoint answers 2xx.
//   node scripts/healthcheck.ts bot        GET http://127.0.0.1:$BOT_HTTP_PORT/health (default port 8080)
//   node scripts/healthcheck.ts opencode   GET http://127.0.0.1:$OPENCODE_PORT/global/health (default 4096),
//                                          with basic auth when OPENCODE_SERVER_PASSWORD is set
//   node scripts/healthcheck.ts URL        GET URL
const target = process.argv[2] ?? "bot";
const headers: Record<string, string> = {};
let url: string;
if (target === "bot") {
  url = `http://127.0.0.1:${process.env.BOT_HTTP_PORT || "8080"}/health`;
} else if (target === "opencode") {
  url = `http://127.0.0.1:${process.env.OPENCODE_PORT || "4096"}/global/health`;
  const password = process.env.OPENCODE_SERVER_PASSWORD;
  if (password) {
    const user = process.env.OPENCODE_SERVER_USERNAME || "opencode";
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
  }
} else {
  url = target;
}

try {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(4000) });
  const body = (await res.text()).slice(0, 500);
  if (!res.ok) {
    process.stderr.write(`${url}: HTTP ${res.status} ${body}\n`);
    process.exit(1);
  }
  process.stdout.write(`${url}: HTTP ${res.status}\n`);
} catch (err) {
  process.stderr.write(`${url}: ${(err as Error).message}\n`);
  process.exit(1);
}
