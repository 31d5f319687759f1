#!/usr/bin/env bash
# Fuzzes runoff's parsers and judges of untrusted input with libFuzzer (cargo-fuzz), each target
# for a bounded time: config load and validation, JSON compare, request header checks and the
# shadow copy's header, the WebSocket frame parser (targets in fuzz/fuzz_targets/, entry points
# in src/fuzzing.rs). Runs outside .ci/run: it needs a nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly`, `cargo install cargo-fuzz`). A crash leaves its input in
# fuzz/artifacts/TARGET/; keep it as a case in src/fuzzing.rs's tests once fixed.
#
# Usage: bash scripts/fuzz.sh [TARGET...]      env: FUZZ_SECONDS (per target, default 60)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs cargo-fuzz: cargo install cargo-fuzz" >&2
  exit 1
fi
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(config json_compare request_head websocket_frames)

status=0
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -max_len=65536 \
      -rss_limit_mb=4096 2>&1 | tail -n 5; then
    status=1
  fi
done
exit "$status"
