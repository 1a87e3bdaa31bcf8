#!/usr/bin/env bash
# Replays the Dockerfile outside Docker (no Docker engine runs on the development machines or in CI).
# It reads the Dockerfile itself, in order:
#   COPY (from the build context)  copied into a temp dir laid out like the image's /app
#   RUN in the builder stage       run there, except apt-get (the host provides python3, make, g++)
#   RUN in the runtime stage       skipped (system layout: PATH link, /data, chown); their checks are redone below
#   ENV of the runtime stage       exported, with /data and /workspace moved into the temp dir
#   CMD                            started as the bot, HOME a fresh empty directory as in the image
#   HEALTHCHECK CMD                polled until it passes; then SIGTERM must end the bot with code 0
# Needs a homeserver and the bot's account in the environment: MATRIX_HOMESERVER_URL,
# MATRIX_ACCESS_TOKEN (or MATRIX_USER_ID + MATRIX_PASSWORD), BOT_ALLOWED_USERS. Without
# OPENCODE_SERVER_URL the bot starts the opencode binary that the install put into node_modules,
# the image's embedded default. KEEP_REPLAY_DIR=1 keeps the temp dir. Prints the time of each step.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dockerfile="$repo/Dockerfile"
work="$(mktemp -d "${TMPDIR:-/tmp}/image-replay-XXXXXX")"
app="$work/app"
mkdir -p "$app" "$work/home" "$work/data" "$work/workspace"
bot_pid=""
t_start=$(date +%s.%N)

say() { printf '[replay] %s\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
fail() { say "FAILED: $*"; exit 1; }
cleanup() {
  if [ -n "$bot_pid" ] && kill -0 "$bot_pid" 2>/dev/null; then kill -KILL "$bot_pid" 2>/dev/null || true; fi
  if [ -n "${KEEP_REPLAY_DIR:-}" ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

: "${MATRIX_HOMESERVER_URL:?set MATRIX_HOMESERVER_URL (and the bot account) for the replay}"
: "${BOT_ALLOWED_USERS:?set BOT_ALLOWED_USERS for the replay}"

node_version="$(node --version)"
case "$node_version" in
  v22.*) minor="${node_version#v22.}"; minor="${minor%%.*}"; [ "$minor" -ge 18 ] || fail "node $node_version: the image's node:22-slim is >= 22.18" ;;
  *) fail "node $node_version: the image runs Node 22 (put Node 22 first on PATH)" ;;
esac
say "node $node_version; Dockerfile $dockerfile; work dir $work"

# Logical lines: backslash continuations joined, comments and blank lines dropped.
logical_lines() {
  awk '{ if (sub(/\\[ \t]*$/, "")) { buf = buf $0 " "; next } print buf $0; buf = "" }' "$dockerfile" \
    | sed -E 's/^[[:space:]]+//' | grep -Ev '^(#|$)'
}

# COPY src... dest, relative to WORKDIR /app; a dest ending in / (or several sources) is a directory.
replay_copy() {
  local -a words=() srcs=()
  read -r -a words <<<"$1"
  local w
  for w in "${words[@]:1}"; do
    case "$w" in --from=*) return 0 ;; --*) ;; *) srcs+=("$w") ;; esac
  done
  local dest="${srcs[-1]}"
  unset 'srcs[-1]'
  case "$dest" in /app/*) dest="${dest#/app/}" ;; /app) dest="." ;; /*) fail "COPY to $dest: outside WORKDIR /app" ;; esac
  local src
  for src in "${srcs[@]}"; do
    [ -e "$repo/$src" ] || fail "COPY $src: no such file in the build context"
    if [ "${#srcs[@]}" -gt 1 ] || [[ "$dest" == */ ]] || [ "$dest" = "." ]; then
      mkdir -p "$app/$dest"
      cp -a "$repo/$src" "$app/$dest/"
    else
      mkdir -p "$(dirname "$app/$dest")"
      if [ -d "$repo/$src" ]; then mkdir -p "$app/$dest" && cp -a "$repo/$src/." "$app/$dest/"; else cp -a "$repo/$src" "$app/$dest"; fi
    fi
  done
  say "COPY ${srcs[*]} -> $dest"
}

stage=""
cmd_json=""
health_json=""
declare -a runtime_env=()
while IFS= read -r line; do
  keyword="${line%% *}"
  rest="${line#* }"
  case "$keyword" in
    FROM)
      stage="$(awk '{ print tolower($NF) }' <<<"$rest")"
      say "stage $stage ($rest)" ;;
    WORKDIR)
      [ "$rest" = "/app" ] || fail "WORKDIR $rest: the replay assumes /app" ;;
    COPY)
      replay_copy "$line" ;;
    RUN)
      if [ "$stage" != "builder" ]; then say "skipped in $stage: RUN ${rest:0:70}..."; continue; fi
      case "$rest" in apt-get*) say "skipped (host provides): RUN ${rest:0:70}..."; continue ;; esac
      t=$(date +%s.%N)
      say "RUN $rest"
      # As Docker does: /bin/sh -c. npm may use its cache without asking the registry again.
      (cd "$app" && npm_config_prefer_offline=true sh -c "$rest") || fail "RUN $rest"
      say "  done in $(elapsed "$t")" ;;
    ENV)
      if [ "$stage" = "builder" ]; then continue; fi
      read -r -a pairs <<<"$rest"
      runtime_env+=("${pairs[@]}") ;;
    CMD)
      cmd_json="$rest" ;;
    HEALTHCHECK)
      health_json="${rest#*CMD }" ;;
  esac
done < <(logical_lines)

[ -n "$cmd_json" ] || fail "no CMD in the Dockerfile"
[ -n "$health_json" ] || fail "no HEALTHCHECK CMD in the Dockerfile"
[ -x "$app/node_modules/.bin/opencode" ] || fail "node_modules/.bin/opencode is missing: the embedded default has no binary"
say "opencode binary: $("$app/node_modules/.bin/opencode" --version)"

mapfile -t cmd < <(node -e 'for (const a of JSON.parse(process.argv[1])) console.log(a)' "$cmd_json")
mapfile -t health < <(node -e 'for (const a of JSON.parse(process.argv[1])) console.log(a)' "$health_json")
port="$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')"

# The image's ENV, then what differs outside a container: paths under the work dir, a free port.
for kv in "${runtime_env[@]}"; do export "${kv?}"; done
export HOME="$work/home" BOT_DATABASE_PATH="$work/data/bot.db" OPENCODE_WORKSPACE_DIR="$work/workspace" BOT_HTTP_PORT="$port"
say "image env: ${runtime_env[*]} (paths and port moved: BOT_DATABASE_PATH, OPENCODE_WORKSPACE_DIR, BOT_HTTP_PORT=$port)"

t=$(date +%s.%N)
say "CMD ${cmd[*]}"
(cd "$app" && exec "${cmd[@]}") >"$work/bot.log" 2>&1 &
bot_pid=$!
healthy=""
for _ in $(seq 1 240); do
  if ! kill -0 "$bot_pid" 2>/dev/null; then tail -n 30 "$work/bot.log"; fail "the bot exited before it was healthy"; fi
  if (cd "$app" && "${health[@]}") >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.25
done
if [ -z "$healthy" ]; then tail -n 30 "$work/bot.log"; fail "HEALTHCHECK ${health[*]} did not pass within 60 s"; fi
say "HEALTHCHECK passes: $(cd "$app" && "${health[@]}" 2>&1) (bot up in $(elapsed "$t"))"
say "GET /health: $(node -e 'fetch(process.argv[1]).then(r => r.text()).then(t => console.log(t.slice(0, 300)))' "http://127.0.0.1:$port/health")"

kill -TERM "$bot_pid"
code=0
wait "$bot_pid" || code=$?
bot_pid=""
[ "$code" -eq 0 ] || { tail -n 30 "$work/bot.log"; fail "the bot exited with $code after SIGTERM"; }
say "SIGTERM: the bot exited with 0"
say "OK: replayed build and start in $(elapsed "$t_start")"
