#!/usr/bin/env bash
# Runs the whole test suite (unit and integration; every network test stays on 127.0.0.1), then
# the patched Pingora crate's tests.
# Installs what the tests need and is missing: cmake (build), Prometheus and promtool (the
# dashboard test), Go and the Node example's packages (the example backends' test), Chromium
# and playwright-core (the live page's browser test).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-lib.sh
bash scripts/deps.sh
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  apt_install --no-install-recommends prometheus
fi
bash examples/setup.sh
bash scripts/browser-deps.sh
cargo test --all-targets "$@"
# The patched Pingora crate's own tests, with the patch (patches/README.md).
cargo test -p pingora-http
