#!/usr/bin/env bash
# bench/idle.sh — what idle keep-alive callers cost runoff: N (10,000) connections each send one
# request and stay open, idle, for HOLD seconds. On 127.0.0.1 only, about half a minute.
#
# runoff runs its default config but for the listeners (threads from the cores, keep-alive
# timeout 75 s and connection cap 16,384 from the hardening defaults, both above the test),
# in front of an nginx answering a small JSON document. RSS is read from /proc before (after
# one request), while all N are open, and SETTLE seconds after they closed.
# The same client then holds N idle connections to the bare Pingora pass-through
# (bench/pingora_passthrough.rs, as many threads as runoff), for the per-connection cost of
# Pingora itself in the same run.
# Target (#19): RSS while all N are open ≤ 64 MiB; the bench exits 1 when it is missed
# (CHECK_TARGETS=0 only reports).
#
# Usage: bash bench/idle.sh
# env: N (10000), HOLD (s, 5), SETTLE (s, 15), RUNOFF_BIN, PINGORA_BIN (the pass-through;
#      built with `cargo build --release --example pingora-passthrough` unless set), KEEP_TMP=1
set -euo pipefail

N="${N:-10000}"
HOLD="${HOLD:-5}"
SETTLE="${SETTLE:-15}"
LOG_TAG=idle
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install_missing # nginx, curl, python3
ensure_runoff_bin
setup_tmp runoff-idle
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) > N + 100)) || die "the open-files limit $(ulimit -n) is below $N connections"

BACKEND_PORT="$(free_port)"
PORT="$(free_port)"
ADMIN="$(free_port)"
start_nginx backend "
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / { default_type application/json; return 200 '{\"users\":[]}'; }
    }"
wait_http "http://127.0.0.1:$BACKEND_PORT/" "$NGINX_PID" "backend nginx"

cat >"$TMP/runoff.yaml" <<YAML
listen: 127.0.0.1:$PORT
admin: { listen: 127.0.0.1:$ADMIN }
backends:
  node: { address: 127.0.0.1:$BACKEND_PORT }
routes:
  - name: api
    split: { node: 100 }
YAML
launch_runoff runoff "$TMP/runoff.yaml" "$TMP/runoff.log" "$PORT" "$ADMIN" /api/users
THREADS_USED="$(curl -s "http://127.0.0.1:$ADMIN/api/config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["server"]["threads"])' 2>/dev/null || echo '?')"

hold_idle() { # PID PORT NAME: N idle callers on PORT; HELD_RSS is PID's RSS once all are open
    python3 "$REPO_ROOT/bench/idle_clients.py" "$2" "$N" "$HOLD" >"$TMP/clients-$3.txt" 2>&1 &
    CLIENTS=$!
    PIDS+=("$CLIENTS")
    until grep -q '^open' "$TMP/clients-$3.txt" 2>/dev/null; do
        kill -0 "$CLIENTS" 2>/dev/null || die "the client failed: $(tail -3 "$TMP/clients-$3.txt")"
        sleep 0.1
    done
    sleep 1
    HELD_RSS="$(rss_kib "$1")"
}

before="$(rss_kib "$RUNOFF_PID")"
hold_idle "$RUNOFF_PID" "$PORT" runoff
open_rss="$HELD_RSS"
open_conns="$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^runoff_downstream_connections / { print $NF }')"
wait "$CLIENTS" || die "the client failed: $(tail -3 "$TMP/clients-runoff.txt")"
sleep "$SETTLE"
after="$(rss_kib "$RUNOFF_PID")"
kill "$RUNOFF_PID" 2>/dev/null || true

# The floor: bare Pingora, as many threads, the same callers.
if [[ -z "${PINGORA_BIN:-}" ]]; then
    log "building the Pingora pass-through (cargo build --release --example pingora-passthrough)"
    (cd "$REPO_ROOT" && cargo build --release --example pingora-passthrough)
    PINGORA_BIN="$REPO_ROOT/target/release/examples/pingora-passthrough"
fi
PINGORA_PORT="$(free_port)"
PINGORA_THREADS="$THREADS_USED"
[[ "$PINGORA_THREADS" =~ ^[0-9]+$ ]] || PINGORA_THREADS="$(nproc)" # runoff's default: the cores
"$PINGORA_BIN" "127.0.0.1:$PINGORA_PORT" "127.0.0.1:$BACKEND_PORT" "$PINGORA_THREADS" \
    >"$TMP/pingora.log" 2>&1 &
PINGORA_PID=$!
PIDS+=("$PINGORA_PID")
wait_http "http://127.0.0.1:$PINGORA_PORT/api/users" "$PINGORA_PID" "pingora pass-through"
pingora_before="$(rss_kib "$PINGORA_PID")"
hold_idle "$PINGORA_PID" "$PINGORA_PORT" pingora
wait "$CLIENTS" || die "the client failed: $(tail -3 "$TMP/clients-pingora.txt")"
pingora_open="$HELD_RSS"

echo
echo "machine: $(machine_summary); runoff threads=$THREADS_USED (default config but for the listeners)"
awk -v b="$before" -v o="$open_rss" -v a="$after" -v n="$N" -v c="$open_conns" -v s="$SETTLE" 'BEGIN {
    printf "%d idle keep-alive connections (runoff_downstream_connections %s): RSS %.1f MiB before, %.1f MiB open (%.1f KiB each), %.1f MiB %s s after closing\n",
        n, c, b / 1024, o / 1024, (o - b) / n, a / 1024, s
}'
awk -v b="$pingora_before" -v o="$pingora_open" -v n="$N" -v rb="$before" -v ro="$open_rss" 'BEGIN {
    printf "the same callers on bare Pingora: RSS %.1f MiB before, %.1f MiB open (%.1f KiB each); runoff/pingora per connection %.2f\n",
        b / 1024, o / 1024, (o - b) / n, ((ro - rb) / n) / ((o - b) / n)
}'
verdict="$(awk -v o="$open_rss" 'BEGIN { print (o / 1024 <= 64) ? "met" : "MISSED" }')"
echo
echo "targets (#19):"
printf '  %-46s %6.1f <= %-5s %s\n' "runoff RSS with $N idle connections (MiB)" "$(awk -v o="$open_rss" 'BEGIN { print o / 1024 }')" 64 "$verdict"
if [[ "$verdict" == MISSED && "${CHECK_TARGETS:-1}" != 0 ]]; then
    echo "a target is missed (CHECK_TARGETS=0 to only report)"
    exit 1
fi
