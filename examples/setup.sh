#!/usr/bin/env bash
# Installs what the example backends need, and only what is missing, so it is safe to run
# again: Go (Debian's golang-go) when `go` is absent, gorilla/websocket (Debian's
# golang-github-gorilla-websocket-dev, which examples/go/go.mod points at: Go modules are not
# downloaded) when its source directory is absent, Node.js and npm when absent, and the Node
# app's packages (Express, ws: `npm ci`, from the committed package-lock.json) when
# examples/node/node_modules is absent or older than the lockfile.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
# The directory of the `replace` in examples/go/go.mod.
[ -d /usr/share/gocode/src/github.com/gorilla/websocket ] ||
  missing+=(golang-github-gorilla-websocket-dev)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "examples/setup.sh: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

node_dir="$here/node"
stamp="$node_dir/node_modules/.package-lock.json"   # written by npm on every install
if [ ! -f "$stamp" ] || [ "$node_dir/package-lock.json" -nt "$stamp" ]; then
  echo "examples/setup.sh: npm ci in examples/node" >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "examples/setup.sh: ready ($(go version | cut -d' ' -f3), node $(node --version))" >&2
