#!/usr/bin/env bash
# bench/soak.sh — does runoff stay flat under steady load, and give back what a burst of idle
# connections took? On 127.0.0.1 only, bounded in time. (The one soak script; the performance
# work reuses it.)
#
# Backends: two nginx servers (1 worker) answering the same JSON document, as "node" and "go".
# runoff (default config but for the listeners): route `api` splits node 90 / go 10, mirrors
# every GET node serves to go, and compares the answers (JSON, an ignored path, arrays as
# multisets). Load: wrk -t1 -cCONNS for DURATION seconds (closed loop: steady, whatever the
# machine's speed). Every INTERVAL seconds it prints runoff's RSS, open descriptors, requests
# served and copies sent in that interval. Target: after WARMUP (660 s: the allocator's arenas,
# and the analysis window's sixty 10-second slots, `SLOTS` in src/analysis/recorder.rs, filling
# for its first 10 minutes; a 30-minute run on 2026-12-03 climbed ~0.4 MiB a minute until
# minute 14, then stayed within -1.6% / +1.3%), RSS within 10% of its post-warm-up median, and
# descriptors flat.
#
# Then the burst: BURST (1,000) connections each send one request and stay open, idle, for
# HOLD seconds, then close; RSS is read before, while they are open and SETTLE seconds after
# they closed. Target: back within 20% of before. runoff's allocator is jemalloc with its
# background purge thread: freed memory goes back to the system after its 10 s decay, hence
# SETTLE's 15 s (glibc's malloc, runoff's allocator before, kept the burst's memory for good).
#
# Usage: bash bench/soak.sh
# env: DURATION (s, 1200), INTERVAL (s, 60), WARMUP (s, 660), CONNS (8), BURST (1000), HOLD (s, 5),
#      SETTLE (s, 15), RUNOFF_BIN, KEEP_TMP=1
set -euo pipefail

DURATION="${DURATION:-1200}"
INTERVAL="${INTERVAL:-60}"
WARMUP="${WARMUP:-660}"
CONNS="${CONNS:-8}"
BURST="${BURST:-1000}"
HOLD="${HOLD:-5}"
SETTLE="${SETTLE:-15}"
LOG_TAG=soak
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install_missing wrk # and nginx, curl, python3
ensure_runoff_bin
setup_tmp runoff-soak

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# metric NAME LABEL_FILTER: the sum of a family's samples whose labels match the regex.
metric() {
    curl -s "http://127.0.0.1:$ADMIN/metrics" |
        awk -v name="$1" -v filter="${2:-}" '
            $1 ~ "^" name "(\\{|$)" && $1 ~ filter { sum += $NF }
            END { printf "%d", sum }'
}

# ------------------------------------------------------------- backends -----
NODE_PORT="$(free_port)"
GO_PORT="$(free_port)"
DOC='{"users":[{"id":1,"name":"ada","score":91.5},{"id":2,"name":"linus","score":88}],"count":2}'
start_nginx backends "
    server {
        listen 127.0.0.1:$NODE_PORT;
        location / { default_type application/json; return 200 '$DOC'; }
    }
    server {
        listen 127.0.0.1:$GO_PORT;
        location / { default_type application/json; return 200 '$DOC'; }
    }" 8192
wait_http "http://127.0.0.1:$NODE_PORT/" "$NGINX_PID" "nginx (node)"
wait_http "http://127.0.0.1:$GO_PORT/" "$NGINX_PID" "nginx (go)"

# --------------------------------------------------------------- runoff -----
PORT="$(free_port)"
ADMIN="$(free_port)"
cat >"$TMP/runoff.yaml" <<EOF
listen: 127.0.0.1:$PORT
admin: { listen: 127.0.0.1:$ADMIN }
backends:
  node: { address: "127.0.0.1:$NODE_PORT" }
  go: { address: "127.0.0.1:$GO_PORT" }
routes:
  - name: api
    split: { node: 90, go: 10 }
    mirror: { to: go, percent: 100 }
    compare:
      body:
        json: { ignore_paths: [/count], array_order: ignore }
EOF
launch_runoff "runoff" "$TMP/runoff.yaml" "$TMP/runoff.log" "$PORT" "$ADMIN" /api/users

log "machine: $(machine_summary); $(nginx_version); wrk -t1 -c$CONNS for ${DURATION}s"
printf '%8s %10s %6s %12s %12s\n' "t (s)" "RSS (MiB)" "fds" "req/s" "copies/s"
wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/api/users" >"$TMP/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
rss_samples=() # after WARMUP
fd_samples=()
served0="$(metric runoff_requests_total 'role="primary"')"
copies0="$(metric runoff_mirror_requests_total)"
for ((t = INTERVAL; t <= DURATION; t += INTERVAL)); do
    sleep "$INTERVAL"
    rss="$(rss_kib "$RUNOFF_PID")"
    fd="$(fds "$RUNOFF_PID")"
    served="$(metric runoff_requests_total 'role="primary"')"
    copies="$(metric runoff_mirror_requests_total)"
    printf '%8d %10.1f %6d %12.0f %12.0f\n' "$t" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
        "$fd" "$(((served - served0) / INTERVAL))" "$(((copies - copies0) / INTERVAL))"
    served0=$served
    copies0=$copies
    ((t > WARMUP)) && rss_samples+=("$rss")
    fd_samples+=("$fd")
done
wait "$WRK_PID" || true
grep -E 'Requests/sec|Non-2xx|Socket errors' "$TMP/wrk.txt" | sed 's/^/  wrk: /' >&2 || true

# After the warm-up: every sample within 10% of their median.
verdict="n/a (no interval after WARMUP)"
if ((${#rss_samples[@]} > 0)); then
    verdict="$(printf '%s\n' "${rss_samples[@]}" | sort -n | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            lo = v[1] / m - 1; hi = v[NR] / m - 1
            w = (-lo > hi) ? -lo : hi
            printf "%s: samples within %+.1f%% / %+.1f%% of their median (%.1f MiB), target 10%%",
                (w <= 0.10 ? "ok" : "MISS"), lo * 100, hi * 100, m / 1024
        }')"
fi
log "RSS after ${WARMUP}s: $verdict"
log "descriptors: first ${fd_samples[0]:-?}, last ${fd_samples[${#fd_samples[@]}-1]:-?}"
log "compare: $(metric runoff_compare_total 'result="match"') matched, $(metric runoff_compare_total 'result="mismatch"') mismatched, $(metric runoff_compare_total 'result="skipped"') skipped; copies dropped: $(metric runoff_mirror_dropped_total)"

# ---------------------------------------------------------------- burst -----
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
before="$(rss_kib "$RUNOFF_PID")"
python3 "$REPO_ROOT/bench/idle_clients.py" "$PORT" "$BURST" "$HOLD" >"$TMP/burst.txt" &
BURST_PID=$!
PIDS+=("$BURST_PID")
until grep -q '^open' "$TMP/burst.txt" 2>/dev/null; do
    kill -0 "$BURST_PID" 2>/dev/null || die "the burst client failed: $(cat "$TMP/burst.txt")"
    sleep 0.1
done
during="$(rss_kib "$RUNOFF_PID")"
wait "$BURST_PID" || die "the burst client failed"
sleep "$SETTLE"
after="$(rss_kib "$RUNOFF_PID")"
awk -v b="$before" -v d="$during" -v a="$after" -v n="$BURST" 'BEGIN {
    printf "burst of %d idle connections: RSS %.1f MiB before, %.1f MiB open (%.1f KiB each), %.1f MiB after (%+.1f%%: %s, target 20%%)\n",
        n, b / 1024, d / 1024, (d - b) / n, a / 1024, (a / b - 1) * 100, ((a / b - 1) <= 0.20 ? "ok" : "MISS")
}'
