# syntax=docker/dockerfile:1
# Steward's server image: `docker build -t steward:0.1.0 .`
# Runs `node dist/main.js` (the server) by default; the same image runs the standalone stats
# aggregator with `node dist/stats/aggregator-main.js` (k8s/base/aggregator-deployment.yaml).
# Configuration comes only from environment variables (docs/operations.md).

ARG NODE_VERSION=20

# Build: every dependency, then the server (dist/), the dashboard (dist/web) and the agent bundle
# (agent/dist).
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY src ./src
COPY agent ./agent
COPY web ./web
RUN npm run build

# Production dependencies only. No install scripts: none of them builds anything native.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
# Owned by root and read-only to the process: the root filesystem may be mounted read-only.
COPY --from=deps /app/node_modules ./node_modules
# package.json marks dist/ as ES modules, and the server finds dist/web from it.
COPY package.json ./
COPY --from=build /src/dist ./dist
# The Node agent, for images of applications to copy from (`COPY --from=steward /app/agent …`,
# then `node --require /app/agent/register.js app.js`).
COPY agent/package.json agent/register.js agent/README.md ./agent/
COPY --from=build /src/agent/dist ./agent/dist
# The node image's own unprivileged user, by number so that Kubernetes can check runAsNonRoot.
USER 1000:1000
EXPOSE 3000
# Kubernetes uses its own probes (/livez, /readyz); this one is for plain Docker.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/livez').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/main.js"]
