#!/usr/bin/env bash
# The quick start: install what is missing, build runoff, and run `runoff demo`: two built-in
# backends, the proxy splitting one route and mirroring another, 30 s of load, then the report.
# Extra arguments go to `runoff demo` (e.g. --duration 10s, --keep-running, --backends examples).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release
exec ./target/release/runoff demo "$@"
