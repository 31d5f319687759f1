#!/usr/bin/env bash
# Installs what the example backends need, and only what is missing, so it is safe to run
# again: Go (Debian's golang-go) when `go` is absent, gorilla/websocket (Debian's
# golang-github-gorilla-websocket-dev, which examples/go/go.mod points at: Go modules are not
# downloaded) when its source directory is absent, Node.js and npm when absent, and the Node
# app's packages (Express, ws: `npm ci`, from the committed package-lock.json) when
# examples/node/node_modules is absent or older than the lockfile.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../scripts/install-lib.sh"

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
# The directory of the `replace` in examples/go/go.mod.
[ -d /usr/share/gocode/src/github.com/gorilla/websocket ] ||
  missing+=(golang-github-gorilla-websocket-dev)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
apt_install "${missing[@]}"
npm_ci_if_stale "$here/node"

echo "examples/setup.sh: ready ($(go version | cut -d' ' -f3), node $(node --version))" >&2
