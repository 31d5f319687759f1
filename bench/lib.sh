# bench/lib.sh — helpers shared by bench/run.sh and bench/mirror.sh; not run on its own.
# shellcheck shell=bash
#
# Sourced by each script (source "$(dirname "${BASH_SOURCE[0]}")/lib.sh") after
# `set -euo pipefail` and after it sets LOG_TAG, the prefix of its log lines.
# Sourcing only defines functions and REPO_ROOT, NGINX (env, default /usr/sbin/nginx),
# CLK_TCK; nothing is installed, built or started until the script calls for it.
# Globals the functions set: TMP, PIDS (setup_tmp), RUNOFF_BIN (ensure_runoff_bin),
# NGINX_PID (start_nginx), RUNOFF_PID (launch_runoff).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NGINX="${NGINX:-/usr/sbin/nginx}"

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools -----
# apt_install_missing [CMD...]: apt-get install each CMD not on PATH (packaged under
# its own name, e.g. wrk), then whatever is missing of what every benchmark needs:
# $NGINX (nginx-light), curl, python3. Uses sudo when not root; nothing if all present.
apt_install_missing() {
    local pkgs=() cmd
    for cmd in "$@"; do command -v "$cmd" >/dev/null || pkgs+=("$cmd"); done
    [[ -x "$NGINX" ]] || pkgs+=(nginx-light)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v python3 >/dev/null || pkgs+=(python3)
    ((${#pkgs[@]} == 0)) && return 0
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    log "installing: ${pkgs[*]}"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${pkgs[@]}"
}

# ensure_runoff_bin: unless RUNOFF_BIN is set, build runoff (cargo build --release) and
# point RUNOFF_BIN at target/release/runoff; dies if RUNOFF_BIN is not executable.
ensure_runoff_bin() {
    if [[ -z "${RUNOFF_BIN:-}" ]]; then
        log "building runoff (cargo build --release)"
        (cd "$REPO_ROOT" && cargo build --release)
        RUNOFF_BIN="$REPO_ROOT/target/release/runoff"
    fi
    [[ -x "$RUNOFF_BIN" ]] || die "runoff binary not found or not executable: $RUNOFF_BIN"
}

# ------------------------------------------------------ processes, cleanup --
# setup_tmp PREFIX: make TMP=/tmp/PREFIX.XXXXXX, empty PIDS (every process the script
# starts goes there), and install the traps: cleanup on exit, exit 130/143 on INT/TERM.
setup_tmp() {
    TMP="$(mktemp -d "/tmp/$1.XXXXXX")"
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# cleanup: SIGTERM everything in PIDS, wait for it, SIGKILL what is left; then remove
# TMP, or keep it (and say where) if KEEP_TMP is set.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Give them up to ~4 s (runoff drains for up to drain_timeout=2s), then SIGKILL.
    for _ in $(seq 40); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n "${KEEP_TMP:-}" ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}

# free_port: print a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID WHAT [LIMIT [TRY]]: poll URL until it answers 200, for at most LIMIT s
# (20), each try given TRY s (1; more for a process slowed down by valgrind, whose first
# answers may take longer than a second).
wait_http() {
    local url=$1 pid=$2 what=$3 limit=${4:-20} try=${5:-1}
    local deadline=$((SECONDS + limit))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time "$try" "$url" || true)" == 200 ]]; do
        kill -0 "$pid" 2>/dev/null || die "$what exited during start-up (see above / its log)"
        ((SECONDS < deadline)) || die "$what not ready at $url after $limit s"
        sleep 0.1
    done
}

# start_nginx NAME CONF_BODY [WORKER_CONNECTIONS]: writes $TMP/NAME/nginx.conf around
# the given http{} body (1 worker, WORKER_CONNECTIONS default 4096), runs nginx in the
# foreground (daemon off) in the background; sets NGINX_PID to the master pid.
start_nginx() {
    local name=$1 body=$2 conns=${3:-4096} dir="$TMP/$1"
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections $conns; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 100000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
$body
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}

nginx_worker() { # the single worker process of nginx master $1
    local w
    for _ in $(seq 50); do
        w="$(pgrep -P "$1" | head -n1 || true)"
        [[ -n "$w" ]] && { echo "$w"; return; }
        sleep 0.1
    done
    die "no worker process under nginx master $1"
}

# launch_runoff WHAT CONFIG LOG PORT ADMIN_PORT [PATH]: `runoff check` CONFIG (dies showing
# it if rejected), then `runoff run` it with RUST_LOG=warn, output to LOG; sets RUNOFF_PID.
# Waits for /readyz on ADMIN_PORT (on failure prints LOG and exits), then checks that
# PORT proxies one request for PATH (default /). WHAT names the instance in messages,
# e.g. "runoff (off)".
launch_runoff() {
    local what=$1 cfg=$2 logf=$3 port=$4 admin=$5 path=${6:-/}
    "$RUNOFF_BIN" check --config "$cfg" >&2 || die "runoff rejected its config ($cfg, shown below)
$(cat "$cfg")"
    RUST_LOG=warn "$RUNOFF_BIN" run --config "$cfg" >"$logf" 2>&1 &
    RUNOFF_PID=$!
    PIDS+=("$RUNOFF_PID")
    if ! (wait_http "http://127.0.0.1:$admin/readyz" "$RUNOFF_PID" "$what"); then
        cat "$logf" >&2
        exit 1
    fi
    curl -sf -o /dev/null "http://127.0.0.1:$port$path" ||
        die "$what does not proxy: $(curl -s -i "http://127.0.0.1:$port$path" | head -n1)"
}

# ---------------------------------------------------------- measurement -----
CLK_TCK="$(getconf CLK_TCK)"
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; } # resident KiB of pid $1
# cpu_ticks_user_sys PID: "utime stime" (fields 14, 15) of pid $1, all threads: user space,
# and the kernel on its behalf; comm may hold spaces.
cpu_ticks_user_sys() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
cpu_ticks() { cpu_ticks_user_sys "$1" | awk '{ print $1 + $2 }'; } # utime+stime of pid $1

# cpu_us_per_req T0 T1 N: CPU µs per request from two cpu_ticks readings and N requests.
cpu_us_per_req() {
    awk -v d="$(($2 - $1))" -v hz="$CLK_TCK" -v n="$3" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }'
}

# cpu_split_per_req "U0 S0" "U1 S1" N: "TOTAL USER SYS" CPU µs per request from two
# cpu_ticks_user_sys readings and N requests.
cpu_split_per_req() {
    local u0 s0 u1 s1
    read -r u0 s0 <<<"$1"
    read -r u1 s1 <<<"$2"
    echo "$(cpu_us_per_req $((u0 + s0)) $((u1 + s1)) "$3") $(cpu_us_per_req "$u0" "$u1" "$3")" \
        "$(cpu_us_per_req "$s0" "$s1" "$3")"
}

# ------------------------------------------------------------- report -------
# ratio A B: A / B to 2 decimals, or n/a if B is 0 or either is "-" (or A is "nan").
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "-" || b == "-" || a == "nan") print "n/a"; else printf "%.2f", a / b }'; }

# machine_summary: "N CPUs, <CPU model name>".
machine_summary() { echo "$(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"; }

# nginx_version: "nginx/1.x.y" of $NGINX.
nginx_version() { "$NGINX" -v 2>&1 | sed 's/.*: //'; }

# ------------------------------------------------------ per-request counts ---
# Steadier than req/s on a shared box: the same binary and load give the same counts.

# instructions_per_req NAME PORT CMD...: start CMD (listening on 127.0.0.1:PORT) under
# callgrind twice, send N_SMALL (500) then N_BIG (2,500) requests over 4 keep-alive
# connections, stop it with SIGINT; the difference of the two totals over the difference of
# the counts is what one more request costs, start-up and shutdown cancelled out. Prints
# "INSTRUCTIONS I1_MISSES": callgrind simulates the caches of this one process (fixed sizes,
# not the host's: 32 KiB L1s, 1 MiB last level), and the instruction-cache misses say how much
# distinct code a request runs through, where equal instructions can still cost unequal time.
# The simulation makes the four runs far slower (~3.5 minutes more here): CACHE_SIM=0 skips it.
instructions_per_req() {
    local name=$1 port=$2
    shift 2
    local totals=() n
    for n in 500 2500; do
        local out="$TMP/callgrind-$name-$n.out"
        local sim=(--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=1048576,16,64)
        [[ "${CACHE_SIM:-1}" == 0 ]] && sim=()
        valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$out" "$@" \
            >"$TMP/callgrind-$name-$n.log" 2>&1 &
        local pid=$!
        PIDS+=("$pid")
        # One request answered: the client sends the rest.
        wait_http "http://127.0.0.1:$port/" "$pid" "$name under callgrind ($TMP/callgrind-$name-$n.log)" 120 30
        python3 "$REPO_ROOT/bench/keepalive_client.py" "http://127.0.0.1:$port/" "$((n - 1))" 4 ||
            die "$name: requests failed under callgrind"
        kill -INT "$pid"
        wait "$pid" 2>/dev/null || true
        # The events line names the columns of the totals line (Ir first, I1mr among them).
        totals+=("$(awk '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
            /^(summary|totals):/ { print $(col["Ir"]) "," (("I1mr" in col) ? $(col["I1mr"]) : ""); exit }' "$out")")
    done
    awk -v a="${totals[0]}" -v b="${totals[1]}" 'BEGIN {
        split(a, x, ","); split(b, y, ",")
        ir = (x[1] == "" || y[1] == "") ? "n/a" : sprintf("%.0f", (y[1] - x[1]) / 2000)
        i1 = (x[2] == "" || y[2] == "") ? "n/a" : sprintf("%.0f", (y[2] - x[2]) / 2000)
        print ir, i1 }'
}

# syscalls_per_req PID URL: attach strace -c to the running PID (every thread), send 2,000
# requests over 4 keep-alive connections, detach; system calls per request.
syscalls_per_req() {
    local pid=$1 url=$2 out="$TMP/strace-$1.txt"
    python3 "$REPO_ROOT/bench/keepalive_client.py" "$url" 200 4 || die "warm-up requests failed"
    strace -f -c -o "$out" -p "$pid" 2>/dev/null &
    local tracer=$!
    PIDS+=("$tracer")
    # Requests start once strace traces every thread (a thread's TracerPid is set on attach).
    local deadline=$((SECONDS + 10)) task
    for task in /proc/"$pid"/task/*; do
        # (A thread that ended meanwhile reads as empty and is passed.)
        while [[ "$(awk '/^TracerPid:/ { print $2 }' "$task/status" 2>/dev/null)" == 0 ]]; do
            kill -0 "$tracer" 2>/dev/null || die "strace could not attach to $pid"
            ((SECONDS < deadline)) || die "strace not attached to every thread of $pid after 10 s"
            sleep 0.05
        done
    done
    python3 "$REPO_ROOT/bench/keepalive_client.py" "$url" 2000 4 || die "requests failed under strace"
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    awk '$NF == "total" { printf "%.1f", $4 / 2000 }' "$out"
}
