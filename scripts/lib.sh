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

# kustomize (the Kubernetes manifests' renderer, used by test/unit/k8s-manifests.test.ts), built
# once from the Go module proxy into Steward's cache; prints the binary's path on stdout.
KUSTOMIZE_VERSION=v5.8.2
ensure_kustomize() {
  local dir="${STEWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/steward}/kustomize/$KUSTOMIZE_VERSION"
  if [ ! -x "$dir/kustomize" ]; then
    echo "[setup] building kustomize $KUSTOMIZE_VERSION (go install)" >&2
    # Built into a private folder beside it, then renamed: a concurrent run never sees half a binary.
    local build="$dir/.build.$$"
    mkdir -p "$build" || return 1
    if ! (cd "$build" && GOTOOLCHAIN=local GOBIN="$build" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2) ||
      ! mv -f "$build/kustomize" "$dir/kustomize"; then
      rm -rf "$build"
      return 1
    fi
    rm -rf "$build"
  fi
  echo "$dir/kustomize"
}
