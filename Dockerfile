# syntax=docker/dockerfile:1
# The bot's image. Also used by docker-compose.yml for the `opencode-server` service, since it
# carries the same `opencode` binary the bot would start as its embedded default.
#
# Node 22 on purpose: the bot needs Node >= 22.18. It runs src/*.ts directly (native type
# stripping), better-sqlite3 13 crashes on Node 20, and matrix-bot-sdk 0.8 needs 22. The builder
# also makes the bundle (dist/bot) that src/main.ts runs instead while it matches src/: the same
# program, started in less than half the time (README: Benchmarks, "Start").
# `node:22-slim` follows the newest 22.x (glibc, so better-sqlite3's and opencode's linux builds fit).
ARG NODE_IMAGE=node:22-slim

# ---- builder: production dependencies, native modules ----
FROM ${NODE_IMAGE} AS builder
# npm runs better-sqlite3's `node-gyp rebuild` at install time: with a bundled prebuild for the
# platform (linux x64/arm64) it only configures (python3 is needed for that), elsewhere it compiles
# SQLite from source (make, g++). The toolchain stays in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# package.json overrides the Matrix crypto binding with a stand-in tarball from vendor/.
COPY vendor ./vendor
# `npm install` following the lock, not `npm ci`: the lock lacks opencode-ai's optional packages
# for other platforms, which `npm ci` reports as out of sync (see .ci/run). The replay in CI
# (scripts/replay-image-build.sh) runs this very line.
RUN npm install --omit=dev --no-audit --no-fund
# Fail the build, not the first start, when the native module or the opencode binary is missing.
RUN node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()" \
 && test -x node_modules/.bin/opencode && node_modules/.bin/opencode --version
# The bundle (scripts/build.ts). esbuild, a dev package, is installed apart at the version of the
# lock and found through NODE_PATH, so the image's node_modules keeps production packages only.
COPY src ./src
COPY scripts/build.ts ./scripts/build.ts
RUN esbuild_dir="$(mktemp -d)" \
 && npm install --prefix "$esbuild_dir" --no-save --no-audit --no-fund "esbuild@$(node -p 'require("./package-lock.json").packages["node_modules/esbuild"].version')" \
 && NODE_PATH="$esbuild_dir/node_modules" node --disable-warning=ExperimentalWarning scripts/build.ts \
 && rm -rf "$esbuild_dir"

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
# git: OpenCode snapshots and the agent's own work; ripgrep: OpenCode's search tools (it would
# otherwise download one); tini: PID 1 that forwards signals and reaps the agent's child processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ripgrep tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    BOT_HTTP_HOST=0.0.0.0 \
    BOT_HTTP_PORT=8080 \
    BOT_DATABASE_PATH=/data/bot.db \
    OPENCODE_WORKSPACE_DIR=/workspace \
    OPENCODE_DISABLE_AUTOUPDATE=1
WORKDIR /app
COPY --from=builder /app/node_modules ./node_modules
COPY --from=builder /app/dist ./dist
COPY package.json package-lock.json ./
COPY src ./src
COPY migrations ./migrations
COPY config/config.example.yaml ./config/config.example.yaml
COPY scripts/healthcheck.ts ./scripts/healthcheck.ts
# `opencode` on PATH: the bot's embedded default resolves the same binary from node_modules;
# the compose `opencode-server` service runs `opencode serve` from this image.
RUN ln -s /app/node_modules/.bin/opencode /usr/local/bin/opencode \
 && opencode --version \
 && mkdir -p /data /workspace /home/node/.local/share/opencode /home/node/.config/opencode /app/dist/bot/code-cache \
 && chown -R node:node /data /workspace /home/node /app/dist/bot/code-cache
# The `node` user (uid 1000) of the base image; the app files stay root-owned and read-only to it,
# all but dist/bot/code-cache: the code V8 compiled during the last start (src/startup/bundle.ts).
USER node
# The SQLite database (threads, sessions, sync token) and the project directory OpenCode works in.
VOLUME ["/data", "/workspace"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "--disable-warning=ExperimentalWarning", "scripts/healthcheck.ts", "bot"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# DEP0060: util._extend, used by matrix-bot-sdk's htmlencode dependency; nothing the bot can change.
# dist/bot/start.mjs: src/main.ts built into JavaScript (the same launcher, without type stripping).
CMD ["node", "--disable-warning=ExperimentalWarning", "--disable-warning=DEP0060", "dist/bot/start.mjs"]
