# Shared by scripts/test.sh and scripts/demo.sh. Sourced, not run.

# Install npm dependencies exactly as locked, only when they are missing or stale.
ensure_node_modules() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "[setup] npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

# Check the toolchains the stack builds with, naming what is missing instead of failing later.
check_toolchains() {
  local missing=()
  for tool in node npm java mvn go; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[setup] missing on PATH: ${missing[*]} (Steward's stack needs Node.js 20, Java 17 with Maven, and Go)" >&2
    exit 2
  fi
}

# Debian's Chromium for the dashboard's browser tests (playwright-core drives it; no browser download).
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  echo "[setup] installing Debian's chromium (apt-get)"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium ||
    { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium; }
}
