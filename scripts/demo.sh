#!/usr/bin/env bash
# The quick start: install what is missing, build runoff, and run `runoff demo`: the proxy on
# config.example.yaml in front of two built-in demo backends. Ctrl-C drains and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release
exec ./target/release/runoff demo "$@"
