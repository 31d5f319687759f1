#!/usr/bin/env bash
# bench/run.sh — loopback benchmark of runoff against nginx as a reverse proxy.
#
# What it measures, in one run, on 127.0.0.1 only:
#   direct  wrk -> backend nginx                    (ceiling: no proxy at all)
#   runoff  wrk -> runoff (THREADS)  -> backend     (the thing under test)
#   nginx   wrk -> nginx (1 worker, upstream keepalive 64) -> backend (reference proxy)
#   pingora wrk -> bare Pingora pass-through (THREADS) -> backend (the floor: the same
#           Pingora release with default settings and nothing added, bench/pingora_passthrough.rs)
# The backend is an nginx answering `200 ok\n` from memory. Each target gets a
# 2 s warm-up (wrk -c16), then a measured run (wrk -t1 -c64 -d$DURATION --latency).
# Reported per target: req/s, p50 and p99 latency, errors (non-2xx, socket), and the
# proxy's own CPU time per request (utime+stime from /proc/PID/stat around the run).
# Then (COUNTS=1, the default) the steadiest figures of all, for runoff and bare Pingora:
# instructions and instruction-cache misses per request (valgrind's callgrind with its cache
# simulation, each proxy started again under it) and
# system calls per request (strace -c attached to the running proxy), from a fixed number of
# requests over 4 keep-alive connections (bench/keepalive_client.py).
#
# Why CPU µs/request is the steadiest figure: wrk, the backend and the proxy all share
# the same few cores (2 on the dev box), so throughput and latency mostly measure who
# wins the scheduler, and swing from run to run. The CPU the proxy burns per request
# is much less sensitive to that contention: it is the proxy's cost, whoever else is
# running. Even so, the numbers are noisy; compare the ratios within one run, not
# absolute numbers across runs or machines.
#
# Usage: bash bench/run.sh
# env: DURATION (s, default 10), THREADS (proxy threads of runoff and the pass-through,
#      default 1: the steadiest on a box the load shares; runoff's own default is the cores),
#      COUNTS (1: instructions and syscalls per request; 0 skips them), CACHE_SIM (1: with the
#      instruction-cache misses, ~3.5 minutes more; 0 skips the cache simulation), RUNOFF_BIN,
#      PINGORA_BIN (the pass-through; built with
#      `cargo build --release --example pingora-passthrough` unless set), KEEP_TMP=1
set -euo pipefail

DURATION="${DURATION:-10}"
THREADS="${THREADS:-1}"
COUNTS="${COUNTS:-1}"
LOG_TAG=bench
# Shared helpers: log/die, installing tools, building runoff, TMP + cleanup on exit,
# free ports, starting nginx and runoff, CPU readings from /proc, ratio.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "$COUNTS" != 0 ]]; then
    apt_install_missing wrk valgrind strace # and nginx, curl, python3
else
    apt_install_missing wrk
fi
ensure_runoff_bin # cargo build --release unless RUNOFF_BIN is set
setup_tmp runoff-bench # TMP, PIDS; everything started is stopped on exit

BACKEND_PORT="$(free_port)"
NGINX_PORT="$(free_port)"
RUNOFF_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"

# 1) the backend
start_nginx backend "    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / { return 200 \"ok\\n\"; }
    }"
BACKEND_MASTER=$NGINX_PID
wait_http "http://127.0.0.1:$BACKEND_PORT/" "$BACKEND_MASTER" "backend nginx"

# 2) the reference proxy
start_nginx proxy "    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 100000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
PROXY_MASTER=$NGINX_PID
wait_http "http://127.0.0.1:$NGINX_PORT/" "$PROXY_MASTER" "nginx proxy"

# 3) runoff
runoff_config() { # PORT ADMIN_PORT: the bench's runoff config, listening there
    cat <<EOF
listen: 127.0.0.1:$1
server: { threads: $THREADS, drain_timeout: 1s }
admin: { listen: 127.0.0.1:$2 }
backends:
  fast: { address: 127.0.0.1:$BACKEND_PORT }
routes:
  - name: bench
    split: { fast: 100 }
EOF
}
runoff_config "$RUNOFF_PORT" "$ADMIN_PORT" >"$TMP/runoff.yaml"
launch_runoff runoff "$TMP/runoff.yaml" "$TMP/runoff.log" "$RUNOFF_PORT" "$ADMIN_PORT"

# 4) the bare Pingora pass-through
if [[ -z "${PINGORA_BIN:-}" ]]; then
    log "building the Pingora pass-through (cargo build --release --example pingora-passthrough)"
    (cd "$REPO_ROOT" && cargo build --release --example pingora-passthrough)
    PINGORA_BIN="$REPO_ROOT/target/release/examples/pingora-passthrough"
fi
PINGORA_PORT="$(free_port)"
"$PINGORA_BIN" "127.0.0.1:$PINGORA_PORT" "127.0.0.1:$BACKEND_PORT" "$THREADS" >"$TMP/pingora.log" 2>&1 &
PINGORA_PID=$!
PIDS+=("$PINGORA_PID")
wait_http "http://127.0.0.1:$PINGORA_PORT/" "$PINGORA_PID" "pingora pass-through"

# ---------------------------------------------------------- measurement -----
to_ms() { # wrk latency like 812.00us / 1.20ms / 2.00s / 1.00m -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0) print "?"; else printf "%.3f", n * f }'
}

ROWS=()
declare -A RPS P99 CPU USER SYS

# bench NAME PORT CPU_PID ('' = no proxy)
bench() {
    local name=$1 port=$2 cpu_pid=$3 url="http://127.0.0.1:$2/" out="$TMP/wrk-$1.txt"
    log "$name: warm-up 2s, then ${DURATION}s measured"
    wrk -t1 -c16 -d2s "$url" >/dev/null
    local t0="" t1=""
    [[ -n "$cpu_pid" ]] && t0="$(cpu_ticks_user_sys "$cpu_pid")"
    wrk -t1 -c64 -d"${DURATION}s" --latency "$url" >"$out"
    [[ -n "$cpu_pid" ]] && t1="$(cpu_ticks_user_sys "$cpu_pid")"

    local reqs rps p50 p99 non2xx sock cpu_us user_us sys_us
    reqs="$(awk '/ requests in / { print $1 }' "$out")"
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
    sock="$(awk -F'[ ,]+' '/Socket errors:/ { print $5 + $7 + $9 + $11 }' "$out")"
    [[ -n "$reqs" && -n "$rps" ]] || { cat "$out" >&2; die "could not parse wrk output for $name"; }
    if [[ -n "$cpu_pid" ]]; then
        read -r cpu_us user_us sys_us < <(cpu_split_per_req "$t0" "$t1" "$reqs")
    else
        cpu_us="-" user_us="-" sys_us="-"
    fi
    RPS[$name]=$rps P99[$name]=$p99 CPU[$name]=$cpu_us USER[$name]=$user_us SYS[$name]=$sys_us
    ROWS+=("$(printf '%-8s %12s %9s %9s %16s %8s %8s %9s %9s %10s' \
        "$name" "$rps" "$p50" "$p99" "$cpu_us" "$user_us" "$sys_us" "${non2xx:-0}" "${sock:-0}" \
        "$reqs")")
}

PROXY_WORKER="$(nginx_worker "$PROXY_MASTER")"
bench direct "$BACKEND_PORT" ""
bench runoff "$RUNOFF_PORT" "$RUNOFF_PID"
bench nginx "$NGINX_PORT" "$PROXY_WORKER"
bench pingora "$PINGORA_PORT" "$PINGORA_PID"

INSTR_RUNOFF=n/a INSTR_PINGORA=n/a SYS_RUNOFF=n/a SYS_PINGORA=n/a I1_RUNOFF=n/a I1_PINGORA=n/a
if [[ "$COUNTS" != 0 ]]; then
    log "system calls per request (strace -c, 2,000 requests each)"
    SYS_RUNOFF="$(syscalls_per_req "$RUNOFF_PID" "http://127.0.0.1:$RUNOFF_PORT/")"
    SYS_PINGORA="$(syscalls_per_req "$PINGORA_PID" "http://127.0.0.1:$PINGORA_PORT/")"
    log "instructions per request (callgrind, 500 and 2,500 requests, each proxy started again)"
    CG_PORT="$(free_port)"
    runoff_config "$CG_PORT" "$(free_port)" >"$TMP/runoff-callgrind.yaml"
    read -r INSTR_RUNOFF I1_RUNOFF < <(RUST_LOG=warn instructions_per_req runoff "$CG_PORT" \
        "$RUNOFF_BIN" run --config "$TMP/runoff-callgrind.yaml")
    CG_PORT="$(free_port)"
    read -r INSTR_PINGORA I1_PINGORA < <(instructions_per_req pingora "$CG_PORT" \
        "$PINGORA_BIN" "127.0.0.1:$CG_PORT" "127.0.0.1:$BACKEND_PORT" "$THREADS")
fi

# ------------------------------------------------------------- report -------
echo
echo "machine: $(machine_summary)"
echo "note:    wrk, the backend nginx and the proxies all share these cores (loopback)"
echo "load:    wrk -t1 -c64 -d${DURATION}s --latency, after a 2s -c16 warm-up; backend returns 'ok\\n'"
echo "proxies: runoff and bare Pingora threads=$THREADS ($(basename "$RUNOFF_BIN")), nginx worker_processes=1 ($(nginx_version))"
echo
printf '%-8s %12s %9s %9s %16s %8s %8s %9s %9s %10s\n' target req/s p50_ms p99_ms \
    proxy_cpu_us/req user_us sys_us non-2xx sock_err requests
printf '%s\n' "${ROWS[@]}"
echo
# ratios A B: A's ratios to B; user and sys apart (user: the proxy's own code; sys: the
# kernel on its behalf, mostly the same reads and writes for every proxy).
ratios() {
    echo "req/s $(ratio "${RPS[$1]}" "${RPS[$2]}")  p99 $(ratio "${P99[$1]}" "${P99[$2]}")" \
        " cpu/req $(ratio "${CPU[$1]}" "${CPU[$2]}") (user $(ratio "${USER[$1]}" "${USER[$2]}")," \
        "sys $(ratio "${SYS[$1]}" "${SYS[$2]}"))"
}
echo "runoff/nginx:   $(ratios runoff nginx)"
echo "runoff/pingora: $(ratios runoff pingora)"
echo "pingora/nginx:  $(ratios pingora nginx): the floor under runoff's ratio to nginx"
echo "runoff/direct: req/s $(ratio "${RPS[runoff]}" "${RPS[direct]}")  p99 $(ratio "${P99[runoff]}" "${P99[direct]}")"
if [[ "$COUNTS" != 0 ]]; then
    echo
    printf '%-8s %14s %14s %14s\n' per-req instructions i-cache_miss syscalls
    printf '%-8s %14s %14s %14s\n' runoff "$INSTR_RUNOFF" "$I1_RUNOFF" "$SYS_RUNOFF" \
        pingora "$INSTR_PINGORA" "$I1_PINGORA" "$SYS_PINGORA"
    echo "runoff/pingora: instructions $(ratio "$INSTR_RUNOFF" "$INSTR_PINGORA")  i-cache misses $(ratio "$I1_RUNOFF" "$I1_PINGORA")  syscalls $(ratio "$SYS_RUNOFF" "$SYS_PINGORA")"
fi

# runoff's log: wrk stopping (warm-up and measured run) closes connections with requests
# in flight, which Pingora logs as "Downstream ConnectionClosed"; anything else is news.
LOG_LINES="$(grep -c . "$TMP/runoff.log" || true)"
CLOSED_LINES="$(grep -c 'Downstream ConnectionClosed' "$TMP/runoff.log" || true)"
echo
echo "runoff log (RUST_LOG=warn): $LOG_LINES lines, $CLOSED_LINES of them 'Downstream ConnectionClosed' (wrk stopping mid-request)"
if ((LOG_LINES > CLOSED_LINES)); then
    echo "other runoff log lines (first 10):"
    awk '/./ && !/Downstream ConnectionClosed/ && n++ < 10' "$TMP/runoff.log"
fi

# The targets of the performance issue (#19), checked on this run's ratios. The bench, not the
# test suite, fails when one is missed: CHECK_TARGETS=0 only reports.
echo
echo "targets (#19):"
MISSED=0
target() { # NAME VALUE OP LIMIT
    local verdict
    verdict="$(awk -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
        if (v == "n/a") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print ok ? "met" : "MISSED" }')"
    printf '  %-46s %6s %s %-5s %s\n' "$1" "$2" "$3" "$4" "$verdict"
    [[ "$verdict" == MISSED ]] && MISSED=1
    return 0
}
target "runoff/pingora req/s" "$(ratio "${RPS[runoff]}" "${RPS[pingora]}")" ">=" 1.0
target "runoff/pingora cpu/req (+-3% counts as equal)" "$(ratio "${CPU[runoff]}" "${CPU[pingora]}")" "<=" 1.03
[[ "$COUNTS" != 0 ]] && target "runoff/pingora instructions/req (tie-breaker)" "$(ratio "$INSTR_RUNOFF" "$INSTR_PINGORA")" "<=" 1.03
target "runoff/nginx req/s" "$(ratio "${RPS[runoff]}" "${RPS[nginx]}")" ">=" 0.7
target "runoff/nginx cpu/req" "$(ratio "${CPU[runoff]}" "${CPU[nginx]}")" "<=" 2.0
if ((MISSED)) && [[ "${CHECK_TARGETS:-1}" != 0 ]]; then
    echo "a target is missed (CHECK_TARGETS=0 to only report)"
    exit 1
fi
