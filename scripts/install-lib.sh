# scripts/install-lib.sh — the two install steps the setup scripts share; sourced, not run.
# shellcheck shell=bash

# apt_install [--no-install-recommends] PKG...: install the given Debian packages (the caller
# lists only what is missing); nothing when none is given. Uses sudo when not root.
apt_install() {
  local opts=()
  if [ "${1:-}" = "--no-install-recommends" ]; then
    opts+=("$1")
    shift
  fi
  [ "$#" -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${opts[@]}" "$@" >/dev/null
}

# npm_ci_if_stale DIR: `npm ci` in DIR (from its committed package-lock.json) when its
# node_modules is absent or older than the lockfile; npm rewrites the stamp on every install.
npm_ci_if_stale() {
  local dir=$1 stamp="$1/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    echo "npm ci in $dir" >&2
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
}
