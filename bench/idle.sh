#!/usr/bin/env bash
# bench/idle.sh — what idle keep-alive callers cost runoff: N (10,000) connections each send one
# request and stay open, idle, for HOLD seconds. On 127.0.0.1 only, about half a minute.
#
# runoff runs its default config but for the listeners (threads from the cores, keep-alive
# timeout 75 s and connection cap 16,384 from the hardening defaults, both above the test),
# in front of an nginx answering a small JSON document. RSS is read from /proc before (after
# one request), while all N are open, and SETTLE seconds after they closed.
# Target (#19): RSS while all N are open ≤ 64 MiB; the bench exits 1 when it is missed
# (CHECK_TARGETS=0 only reports).
#
# Usage: bash bench/idle.sh
# env: N (10000), HOLD (s, 5), SETTLE (s, 15), RUNOFF_BIN, KEEP_TMP=1
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

before="$(rss_kib "$RUNOFF_PID")"
python3 "$REPO_ROOT/bench/idle_clients.py" "$PORT" "$N" "$HOLD" >"$TMP/clients.txt" 2>&1 &
CLIENTS=$!
PIDS+=("$CLIENTS")
until grep -q '^open' "$TMP/clients.txt" 2>/dev/null; do
    kill -0 "$CLIENTS" 2>/dev/null || die "the client failed: $(tail -3 "$TMP/clients.txt")"
    sleep 0.1
done
sleep 1
open_rss="$(rss_kib "$RUNOFF_PID")"
open_conns="$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^runoff_downstream_connections / { print $NF }')"
wait "$CLIENTS" || die "the client failed: $(tail -3 "$TMP/clients.txt")"
sleep "$SETTLE"
after="$(rss_kib "$RUNOFF_PID")"

echo
echo "machine: $(machine_summary); runoff threads=$THREADS_USED (default config but for the listeners)"
awk -v b="$before" -v o="$open_rss" -v a="$after" -v n="$N" -v c="$open_conns" -v s="$SETTLE" 'BEGIN {
    printf "%d idle keep-alive connections (runoff_downstream_connections %s): RSS %.1f MiB before, %.1f MiB open (%.1f KiB each), %.1f MiB %s s after closing\n",
        n, c, b / 1024, o / 1024, (o - b) / n, a / 1024, s
}'
verdict="$(awk -v o="$open_rss" 'BEGIN { print (o / 1024 <= 64) ? "met" : "MISSED" }')"
echo
echo "targets (#19):"
printf '  %-46s %6.1f <= %-5s %s\n' "runoff RSS with $N idle connections (MiB)" "$(awk -v o="$open_rss" 'BEGIN { print o / 1024 }')" 64 "$verdict"
if [[ "$verdict" == MISSED && "${CHECK_TARGETS:-1}" != 0 ]]; then
    echo "a target is missed (CHECK_TARGETS=0 to only report)"
    exit 1
fi
