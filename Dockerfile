# Canopy: a small non-root image (docs/OPERATIONS.md "Docker").
#   docker build -t canopy .
#   docker run -p 8080:8080 -v canopy-data:/app/data canopy
# The image's command is the `canopy` CLI: `docker run … canopy migrate`, `… canopy keys list`, etc.

# --- build: compile TypeScript, the dashboard and the better-sqlite3 native module, then drop dev dependencies
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary can be downloaded
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
# the admin dashboard (React + Vite), built by `npm run build` into dist/web and served at /
COPY web ./web
# prune keeps the native module built above (node_modules/better-sqlite3/build), so the final stage
# needs no compiler
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime: node, the compiled code and production dependencies only
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    CANOPY_HOST=0.0.0.0 \
    CANOPY_PORT=8080 \
    CANOPY_DATABASE_URL=sqlite:/app/data/canopy.db
RUN groupadd --system --gid 10001 canopy \
 && useradd --system --uid 10001 --gid canopy --home-dir /app --no-create-home --shell /usr/sbin/nologin canopy
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# the only writable path: the SQLite database (and its WAL) lives in the volume
RUN mkdir -p /app/data && chown canopy:canopy /app/data
VOLUME ["/app/data"]
USER 10001:10001
EXPOSE 8080
# liveness on the serving port (GET /healthz never touches storage); CANOPY_PORT may move it
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.CANOPY_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# exec form: node is PID 1 and receives SIGTERM itself; `canopy serve` drains in-flight calls on it
# (main.ts installs the handlers, so PID 1's default of ignoring SIGTERM does not apply; no --init needed)
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
