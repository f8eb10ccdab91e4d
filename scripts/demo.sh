#!/usr/bin/env bash
# The main job: installs what is missing, brings up the local real stack (ZooKeeper, Kafka, Eureka,
# FerretDB), starts a demo estate of real Dubbo and Spring Cloud apps, and runs the Steward server
# against it in the foreground. Ctrl-C stops the server and the estate; `npm run stack:down` stops
# the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

check_toolchains
ensure_node_modules
echo "[demo] build"
npm run --silent build
npx tsx stack/stack.ts up
eval "$(npx tsx stack/stack.ts env)"
export PORT="${PORT:-3000}" HOST="${HOST:-127.0.0.1}"
# The demo's admin token: kept in .stack/ so a restarted demo accepts the same one.
if [ -z "${ADMIN_TOKEN:-}" ]; then
  [ -s .stack/admin-token ] || node -e 'console.log(require("node:crypto").randomBytes(24).toString("base64url"))' > .stack/admin-token
  ADMIN_TOKEN="$(cat .stack/admin-token)"
fi
export ADMIN_TOKEN
base="http://${HOST}:${PORT}"
cat <<MSG

  Steward is starting at ${base}
    dashboard              ${base}/   (sign in with the admin API token below)
    API docs (OpenAPI UI)  ${base}/docs
    readiness              ${base}/readyz
    metrics                ${base}/metrics
    admin API token        ${ADMIN_TOKEN}
      e.g. curl -H "Authorization: Bearer \$ADMIN_TOKEN" ${base}/api/registry/applications
  Stop the server with Ctrl-C, the stack with: npm run stack:down

MSG
# The demo estate: real Dubbo 3 / Dubbo 2.7 / Spring Boot + Eureka apps registering in the stack.
npx tsx scripts/demo-estate.ts &
estate=$!
trap 'kill -TERM $estate 2>/dev/null; wait $estate 2>/dev/null' EXIT
node dist/main.js
