#!/usr/bin/env bash
# Runs the whole test suite (unit and integration; every network test stays on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo test --all-targets "$@"
