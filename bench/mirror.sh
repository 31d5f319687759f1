#!/usr/bin/env bash
# bench/mirror.sh — what mirroring (shadow traffic) costs the primary, on 127.0.0.1 only.
#
# Open-loop load: oha sends at a fixed RATE (-q RATE --latency-correction, 64 connections),
# so a proxy that stalls shows it as latency instead of quietly sending fewer requests
# (coordinated omission). Each target gets a 2 s warm-up at RATE, then a measured run of
# DURATION seconds at RATE. Targets, in one run:
#   off          oha -> runoff (1 thread) -> fast backend               (route without mirror)
#   mirror-fast  same, the route mirrors 100% of GETs to a second fast backend
#   mirror-slow  same, the route mirrors 100% of GETs to a backend that answers after 200 ms
#   slow-own     mirror-slow with `server.shadow_threads: 1`: the copies on a thread of their own
#   nginx-mirror oha -> nginx (1 worker, `mirror /mirror;`) -> fast backend, copies to the
#                200 ms backend: nginx holds the client connection until the mirror
#                subrequest ends, the behaviour runoff must not have.
#   off-again    the `off` instance measured again, last: how far the same thing moves within
#                one run (the noise a mirror ratio has to be read against).
# The fast backends are nginx `return 200 "ok\n"`; the slow one is bench/slow_backend.rs (a
# Cargo example, ~27 µs of CPU a request; the Python server it replaced took ~110 µs, 44% of a
# core at 4,000 req/s, on the cores the proxy shares, which showed up as the primary's p99).
# RATE defaults to RATE_FRACTION (0.5) of runoff's mirror-off capacity, measured first
# with a 5 s closed-loop oha run (-c 64). On a 2-core box where oha, backends and proxy
# share the cores, half of capacity is already close to saturation for open-loop oha;
# RATE=4000 keeps the system well below it and the slow shadow's in-flight copies
# (RATE x 0.2 s) under runoff's default mirror max_in_flight (1024).
#
# Reported per target: achieved req/s, p50/p99 (ms, from the scheduled send time), errors,
# the proxy's CPU µs per request (/proc/PID/stat utime+stime around the measured run: the
# whole runoff process, copies included; the nginx worker), and for runoff with a mirror,
# after waiting SETTLE s for in-flight copies (mirror timeout 5s), the share of copies
# completed: sum(runoff_requests_total{role="shadow"}) / sum(runoff_mirror_requests_total),
# and runoff_mirror_dropped_total by reason. Metrics are the instance's whole life
# (warm-up + measured run). Then the ratios to mirror-off.
# Then (COUNTS=1, the default) what a copy costs in the steadiest figures: instructions per
# request (callgrind, a fresh runoff without and with a mirror to the fast shadow; no cache
# simulation unless CACHE_SIM=1) and system calls per request (strace -c on the running off
# and mirror-fast instances), 2,000 requests over 4 keep-alive connections each; the
# difference is one copy's cost, and its ratio to a mirror-off request.
#
# Usage: bash bench/mirror.sh
# env: RATE (req/s; default RATE_FRACTION x measured capacity), RATE_FRACTION (default 0.5),
#      DURATION (s, default 10), COUNTS (1: instructions and syscalls per copy; 0 skips them),
#      CACHE_SIM (0; 1 adds the cache simulation to the callgrind runs),
#      SETTLE (s, default 6), SLOW_MS (shadow delay, default 200), RUNOFF_BIN, KEEP_TMP=1
set -euo pipefail

DURATION="${DURATION:-10}"
SETTLE="${SETTLE:-6}"
SLOW_MS="${SLOW_MS:-200}"
RATE_FRACTION="${RATE_FRACTION:-0.5}"
COUNTS="${COUNTS:-1}"
CACHE_SIM="${CACHE_SIM:-0}" # instructions only: run.sh has the cache simulation
CONNS=64
WARMUP=2
NGINX_CONNS=8192 # worker_connections of the nginx instances (start_nginx's default: 4096)
LOG_TAG=mirror-bench
# Shared helpers: log/die, installing tools, building runoff, TMP + cleanup on exit,
# free ports, starting nginx and runoff, CPU readings from /proc, ratio.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- tools -----
install_missing() {
    if [[ "$COUNTS" != 0 ]]; then
        apt_install_missing valgrind strace # and nginx, curl, python3
    else
        apt_install_missing # nginx, curl, python3
    fi
    if ! command -v oha >/dev/null; then
        # oha is not packaged in Debian; build it from crates.io (a few minutes).
        log "installing oha (cargo install oha --locked)"
        cargo install oha --locked || die "could not build oha (cargo install oha --locked failed)"
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    oha --help | grep -q -- '--latency-correction' || die "this oha has no --latency-correction"
}
install_missing
ensure_runoff_bin # cargo build --release unless RUNOFF_BIN is set
log "building the slow shadow (cargo build --release --example slow-backend)"
(cd "$REPO_ROOT" && cargo build --release --example slow-backend) || die "could not build bench/slow_backend.rs"
SLOW_BIN="$REPO_ROOT/target/release/examples/slow-backend"
setup_tmp runoff-mirror-bench # TMP, PIDS; everything started is stopped on exit

FAST_PORT="$(free_port)"
SHADOW_FAST_PORT="$(free_port)"
SLOW_PORT="$(free_port)"
NGX_PORT="$(free_port)"

# 1) the fast backends: the primary's, and a second one as the fast shadow
for b in fast:$FAST_PORT shadow-fast:$SHADOW_FAST_PORT; do
    start_nginx "${b%%:*}" "    server {
        listen 127.0.0.1:${b##*:} backlog=4096;
        location / { return 200 \"ok\\n\"; }
    }" "$NGINX_CONNS"
    wait_http "http://127.0.0.1:${b##*:}/" "$NGINX_PID" "${b%%:*} backend nginx"
done

# 2) the slow shadow
"$SLOW_BIN" "$SLOW_PORT" "$SLOW_MS" >"$TMP/slow.log" 2>&1 &
SLOW_PID=$!
PIDS+=("$SLOW_PID")
wait_http "http://127.0.0.1:$SLOW_PORT/" "$SLOW_PID" "slow backend (bench/slow_backend.rs)"

# 3) nginx with a mirror to the slow shadow (reference)
start_nginx nginx-mirror "    upstream fast {
        server 127.0.0.1:$FAST_PORT;
        keepalive 64;
        keepalive_requests 100000;
    }
    upstream slow_shadow {
        server 127.0.0.1:$SLOW_PORT;
        keepalive 256;
        keepalive_requests 100000;
    }
    server {
        listen 127.0.0.1:$NGX_PORT backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
        location / {
            mirror /mirror;
            proxy_pass http://fast;
        }
        location = /mirror {
            internal;
            proxy_pass http://slow_shadow\$request_uri;
        }
    }" "$NGINX_CONNS"
NGX_MASTER=$NGINX_PID
wait_http "http://127.0.0.1:$NGX_PORT/" "$NGX_MASTER" "nginx mirror proxy"

# 4) runoff, four instances: off, mirror to the fast shadow, mirror to the slow shadow (copies
#    on the proxy's thread, the default, and on a thread of their own)
declare -A R_PORT R_ADMIN R_PID
mirror_config() { # PORT ADMIN_PORT SHADOW_PORT MIRROR(0|1) SHADOW_THREADS: the YAML, on stdout
    cat <<EOF
listen: 127.0.0.1:$1
server: { threads: 1, drain_timeout: 2s, shadow_threads: $5 }
admin: { listen: 127.0.0.1:$2 }
backends:
  fast:   { address: 127.0.0.1:$FAST_PORT }
  shadow: { address: 127.0.0.1:$3 }
routes:
  - name: bench
    split: { fast: 100 }
EOF
    if (($4)); then echo "    mirror: { to: shadow, percent: 100, timeout: 5s }"; fi
}
start_runoff() { # NAME SHADOW_PORT MIRROR(0|1) [SHADOW_THREADS]
    local name=$1 cfg="$TMP/runoff-$1.yaml"
    R_PORT[$name]="$(free_port)"
    R_ADMIN[$name]="$(free_port)"
    mirror_config "${R_PORT[$name]}" "${R_ADMIN[$name]}" "$2" "$3" "${4:-0}" >"$cfg"
    launch_runoff "runoff ($name)" "$cfg" "$TMP/runoff-$name.log" "${R_PORT[$name]}" "${R_ADMIN[$name]}"
    R_PID[$name]=$RUNOFF_PID
}
start_runoff off "$SHADOW_FAST_PORT" 0
start_runoff mirror-fast "$SHADOW_FAST_PORT" 1
start_runoff mirror-slow "$SLOW_PORT" 1
start_runoff slow-own "$SLOW_PORT" 1 1

# ---------------------------------------------------------- measurement -----
# oha_fields FILE: "rps p50_ms p99_ms responses 2xx non2xx errors deadline_aborted"
oha_fields() {
    python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
errs = r.get("errorDistribution", {})
deadline = sum(v for k, v in errs.items() if "deadline" in k)
other = sum(errs.values()) - deadline
pct = r.get("latencyPercentiles", {})
ms = lambda v: "%.3f" % (v * 1000) if v is not None else "nan"
responses = sum(codes.values())
ok = sum(v for k, v in codes.items() if 200 <= k < 300)
print("%.1f" % r["summary"]["requestsPerSec"], ms(pct.get("p50")), ms(pct.get("p99")),
      responses, ok, responses - ok, other, deadline)
EOF
}

# oha_run OUT QPS(''=closed loop) SECONDS URL
oha_run() {
    local out=$1 qps=$2 secs=$3 url=$4
    local args=(-z "${secs}s" -c "$CONNS" --no-tui --output-format json)
    [[ -n "$qps" ]] && args+=(-q "$qps" --latency-correction)
    oha "${args[@]}" "$url" >"$out" 2>"$out.err" || { cat "$out.err" >&2; die "oha failed against $url"; }
}

# metrics_summary ADMIN_PORT: "completed_share dispatched completed reason=n,... classes fresh/reused"
metrics_summary() {
    curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" >"$TMP/metrics-$1.txt" ||
        die "could not scrape http://127.0.0.1:$1/metrics"
    python3 - "$TMP/metrics-$1.txt" <<'EOF'
import re, sys
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
lab_re = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
dispatched = completed = 0.0
dropped = {}
shadow_classes = {}
shadow_conns = {"false": 0, "true": 0}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    m = line_re.match(line)
    if not m:
        continue
    name, labels, value = m.group(1), dict(lab_re.findall(m.group(2) or "")), float(m.group(3))
    if name == "runoff_mirror_requests_total":
        dispatched += value
    elif name == "runoff_requests_total" and labels.get("role") == "shadow":
        completed += value
        c = labels.get("status_class", "?")
        shadow_classes[c] = shadow_classes.get(c, 0) + value
    elif name == "runoff_mirror_dropped_total":
        r = labels.get("reason", "?")
        dropped[r] = dropped.get(r, 0) + value
    elif name == "runoff_upstream_connections_total" and labels.get("role") == "shadow":
        reused = labels.get("reused", "?")
        shadow_conns[reused] = shadow_conns.get(reused, 0) + value
share = "%.4f" % (completed / dispatched) if dispatched else "n/a"
drops = ",".join("%s=%d" % (k, v) for k, v in sorted(dropped.items())) or "-"
classes = ",".join("%s=%d" % (k, v) for k, v in sorted(shadow_classes.items()) if v) or "-"
print(share, int(dispatched), int(completed), drops, classes,
      "%d/%d" % (shadow_conns["false"], shadow_conns["true"]))
EOF
}

ROWS=()
NOTES=()
declare -A P50 P99 RPS

# bench NAME PORT CPU_PID [ADMIN_PORT]
bench() {
    local name=$1 port=$2 cpu_pid=$3 admin=${4:-} url="http://127.0.0.1:$2/" out="$TMP/oha-$1.json"
    log "$name: warm-up ${WARMUP}s, then ${DURATION}s measured, at $RATE req/s open-loop"
    oha_run "$TMP/oha-$name-warmup.json" "$RATE" "$WARMUP" "$url"
    local t0 t1 s0 s1 w0 w1
    t0="$(cpu_ticks_user_sys "$cpu_pid")"
    s0="$(cpu_ticks "$SLOW_PID")"
    w0=$(date +%s.%N)
    oha_run "$out" "$RATE" "$DURATION" "$url"
    w1=$(date +%s.%N)
    t1="$(cpu_ticks_user_sys "$cpu_pid")"
    s1="$(cpu_ticks "$SLOW_PID")"

    local rps p50 p99 responses ok non2xx errs deadline cpu_us user_us sys_us
    local fields
    fields="$(oha_fields "$out")"
    read -r rps p50 p99 responses ok non2xx errs deadline <<<"$fields"
    ((responses > 0)) || { cat "$out" >&2; die "no responses at all for $name"; }
    read -r cpu_us user_us sys_us < <(cpu_split_per_req "$t0" "$t1" "$responses")
    P50[$name]=$p50 P99[$name]=$p99 RPS[$name]=$rps

    local share="-" drops="-"
    if [[ -n "$admin" ]]; then
        log "$name: waiting ${SETTLE}s for in-flight copies, then scraping /metrics"
        sleep "$SETTLE"
        local dispatched completed classes conns summary
        summary="$(metrics_summary "$admin")"
        read -r share dispatched completed drops classes conns <<<"$summary"
        NOTES+=("$(printf '%-12s copies dispatched %d, completed %d (shadow status classes: %s), dropped: %s; shadow connections new/reused %s' \
            "$name" "$dispatched" "$completed" "$classes" "$drops" "$conns")")
    fi
    if [[ "$name" == mirror-slow || "$name" == slow-own || "$name" == nginx-mirror ]]; then
        NOTES+=("$(printf '%-12s slow shadow CPU during the run: %.0f%% of one core' "$name" \
            "$(awk -v d="$((s1 - s0))" -v hz="$CLK_TCK" -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" \
                'BEGIN { print d / hz / w * 100 }')")")
    fi
    ROWS+=("$(printf '%-12s %9s %9s %9s %10s %8s %8s %8s %8s %9s %9s  %s' \
        "$name" "$rps" "$p50" "$p99" "$cpu_us" "$user_us" "$sys_us" "$non2xx" "$errs" "$deadline" \
        "$share" "$drops")")
}

# Capacity of mirror-off, closed loop, to pick RATE.
if [[ -z "${RATE:-}" ]]; then
    log "capacity: runoff mirror-off, closed loop oha -c $CONNS, ${WARMUP}s warm-up + 5s"
    oha_run "$TMP/oha-capacity-warmup.json" "" "$WARMUP" "http://127.0.0.1:${R_PORT[off]}/"
    oha_run "$TMP/oha-capacity.json" "" 5 "http://127.0.0.1:${R_PORT[off]}/"
    CAPACITY="$(oha_fields "$TMP/oha-capacity.json")"
    CAPACITY="${CAPACITY%% *}"
    RATE="$(awk -v c="$CAPACITY" -v f="$RATE_FRACTION" 'BEGIN { r = int(c * f / 100) * 100; if (r < 100) r = 100; print r }')"
    log "capacity ${CAPACITY} req/s -> RATE=$RATE ($RATE_FRACTION of it)"
    CAPACITY="$CAPACITY req/s (RATE = $RATE_FRACTION of it)"
else
    CAPACITY="not measured (RATE set)"
fi

NGX_WORKER="$(nginx_worker "$NGX_MASTER")"
bench off "${R_PORT[off]}" "${R_PID[off]}"
bench mirror-fast "${R_PORT[mirror-fast]}" "${R_PID[mirror-fast]}" "${R_ADMIN[mirror-fast]}"
bench mirror-slow "${R_PORT[mirror-slow]}" "${R_PID[mirror-slow]}" "${R_ADMIN[mirror-slow]}"
bench slow-own "${R_PORT[slow-own]}" "${R_PID[slow-own]}" "${R_ADMIN[slow-own]}"
bench nginx-mirror "$NGX_PORT" "$NGX_WORKER"
bench off-again "${R_PORT[off]}" "${R_PID[off]}"

# What one copy costs, in counts that do not depend on who else has the cores.
# runoff_instructions NAME MIRROR(0|1): instructions per request of a fresh runoff under
# callgrind, mirroring to the fast shadow or not.
runoff_instructions() {
    local port cfg="$TMP/runoff-callgrind-$1.yaml"
    port="$(free_port)"
    mirror_config "$port" "$(free_port)" "$SHADOW_FAST_PORT" "$2" 0 >"$cfg"
    RUST_LOG=warn instructions_per_req "runoff-$1" "$port" "$RUNOFF_BIN" run --config "$cfg" |
        awk '{ print $1 }'
}
INSTR_OFF=n/a INSTR_MIRROR=n/a SYS_OFF=n/a SYS_MIRROR=n/a
if [[ "$COUNTS" != 0 ]]; then
    log "system calls per request (strace -c, 2,000 requests each): off, mirror-fast"
    SYS_OFF="$(syscalls_per_req "${R_PID[off]}" "http://127.0.0.1:${R_PORT[off]}/")"
    SYS_MIRROR="$(syscalls_per_req "${R_PID[mirror-fast]}" "http://127.0.0.1:${R_PORT[mirror-fast]}/")"
    log "instructions per request (callgrind, 500 and 2,500 requests, runoff started again)"
    INSTR_OFF="$(runoff_instructions off 0)"
    INSTR_MIRROR="$(runoff_instructions mirror 1)"
fi

# ------------------------------------------------------------- report -------
echo
echo "machine:  $(machine_summary)"
echo "note:     oha, the backends and the proxies all share these cores (loopback)"
echo "capacity: runoff mirror-off, closed loop oha -c $CONNS: $CAPACITY"
echo "load:     oha -q $RATE --latency-correction -c $CONNS -z ${DURATION}s (open loop), after ${WARMUP}s at the same rate"
echo "shadows:  fast = nginx 'ok\\n'; slow = bench/slow_backend.rs, +${SLOW_MS} ms; mirror percent 100, timeout 5s"
echo "proxies:  runoff threads=1 ($(basename "$RUNOFF_BIN")), shadow_threads 0 (slow-own: 1), nginx worker_processes=1 ($(nginx_version))"
echo
printf '%-12s %9s %9s %9s %10s %8s %8s %8s %8s %9s %9s  %s\n' \
    target req/s p50_ms p99_ms cpu_us/req user_us sys_us non-2xx errors deadline copies_ok \
    dropped_by_reason
printf '%s\n' "${ROWS[@]}"
echo
echo "(errors: oha connection/timeout errors; deadline: requests cut off when the run ended;"
echo " copies_ok: sum(runoff_requests_total{role=\"shadow\"}) / sum(runoff_mirror_requests_total),"
echo " over the instance's life: warm-up + measured run, scraped ${SETTLE}s after the run)"
printf '%s\n' "${NOTES[@]}"
echo
for t in mirror-fast mirror-slow slow-own nginx-mirror off-again; do
    printf '%-12s / off:  p50 %5s ×   p99 %5s ×\n' "$t" "$(ratio "${P50[$t]}" "${P50[off]}")" "$(ratio "${P99[$t]}" "${P99[off]}")"
done
echo
echo "nginx-mirror p99 = $(ratio "${P99[nginx-mirror]}" "${P99[off]}") × runoff mirror-off"
if [[ "$COUNTS" != 0 ]]; then
    echo
    printf '%-12s %14s %10s\n' per-req instructions syscalls off "$INSTR_OFF" "$SYS_OFF" \
        mirror-fast "$INSTR_MIRROR" "$SYS_MIRROR"
    awk -v io="$INSTR_OFF" -v im="$INSTR_MIRROR" -v so="$SYS_OFF" -v sm="$SYS_MIRROR" 'BEGIN {
        if (io + 0 == 0 || im == "n/a" || so == "n/a" || sm == "n/a") { print "one copy: n/a"; exit }
        printf "one copy: %.0f instructions (%.2f × a mirror-off request), %.1f syscalls\n",
            im - io, (im - io) / io, sm - so }'
fi

# runoff's logs: oha stopping closes connections with requests in flight, which Pingora
# logs as "Downstream ConnectionClosed"; anything else is news.
echo
for name in off mirror-fast mirror-slow slow-own; do
    f="$TMP/runoff-$name.log"
    lines="$(grep -c . "$f" || true)"
    closed="$(grep -c 'Downstream ConnectionClosed' "$f" || true)"
    echo "runoff $name log (RUST_LOG=warn): $lines lines, $closed 'Downstream ConnectionClosed'"
    if ((lines > closed)); then
        echo "  other lines (first 5):"
        awk '/./ && !/Downstream ConnectionClosed/ && n++ < 5 { print "  " $0 }' "$f"
    fi
done
ngx_err="$(grep -c . "$TMP/nginx-mirror/logs/error.log" || true)"
echo "nginx-mirror error.log: $ngx_err lines"
((ngx_err == 0)) || awk 'n++ < 3 { print "  " $0 }' "$TMP/nginx-mirror/logs/error.log"

# The targets of the performance issue (#19) for the 200 ms shadow, on this run's ratios. The
# bench, not the test suite, fails when one is missed: CHECK_TARGETS=0 only reports.
echo
echo "targets (#19), mirror to a ${SLOW_MS} ms shadow vs mirror off, open loop at $RATE req/s:"
MISSED=0
for check in "p99 ${P99[mirror-slow]} ${P99[off]} <= 1.05" "req/s ${RPS[mirror-slow]} ${RPS[off]} >= 0.95"; do
    read -r what a b op limit <<<"$check"
    r="$(ratio "$a" "$b")"
    verdict="$(awk -v v="$r" -v op="$op" -v l="$limit" 'BEGIN {
        if (v == "n/a") { print "n/a"; exit }
        print ((op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)) ? "met" : "MISSED" }')"
    printf '  primary %-38s %6s %s %-5s %s\n' "$what" "$r" "$op" "$limit" "$verdict"
    [[ "$verdict" == MISSED ]] && MISSED=1
done
echo "  (with server.shadow_threads: 1, not the default: p99 $(ratio "${P99[slow-own]}" "${P99[off]}") ×, req/s $(ratio "${RPS[slow-own]}" "${RPS[off]}") ×)"
echo "  (mirror off measured again at the end: p99 $(ratio "${P99[off-again]}" "${P99[off]}") ×: this run's noise, with no mirror at all)"
if ((MISSED)) && [[ "${CHECK_TARGETS:-1}" != 0 ]]; then
    echo "a target is missed (CHECK_TARGETS=0 to only report)"
    exit 1
fi
