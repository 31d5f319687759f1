#!/usr/bin/env bash
# bench/websocket.sh — WebSockets through runoff, against the Node (ws) and Go
# (gorilla/websocket) example apps, on 127.0.0.1 only (~2 minutes).
#
# 1) Idle connections (the seed's "memory per connection" row): N WebSockets opened (one
#    echoed message each, then idle) through runoff to each example in turn, unmirrored,
#    then through runoff to Node mirrored to Go (N smaller: runoff holds three sockets per
#    connection then). Reported: runoff's RSS growth per connection pair (caller side +
#    backend side; + shadow side when mirrored), each backend's RSS growth per connection,
#    and, for the mirrored run, runoff's own WebSocket table (`runoff report`), whose
#    memory per connection comes from its `process:` sampling of both backends.
#    N comes from the open-files limit (runoff needs 2 descriptors per connection, 3 when
#    mirrored): N = limit x 2/5 unmirrored and limit x 3/10 mirrored (8,000 and 6,000 at
#    20,000), unless N_PLAIN / N_MIRROR are set.
# 2) Echo throughput: ECHO_CONNS connections sending SIZE-byte binary messages for ECHO_SECS,
#    request/reply (one message out at a time per connection) and pipelined (up to WINDOW
#    out), direct to each example, through nginx (1 worker, the usual Upgrade proxying) and
#    through runoff (and runoff mirrored to Go), same run. The client, the proxy and the
#    backend share the cores, so compare ratios (via proxy / direct), not absolute numbers
#    across runs. Each proxy's CPU per echoed message (user+sys from /proc) is the steadier
#    figure.
#
# RSS is VmRSS from /proc/PID/status, read before the connections open and while they are
# held (after a 2 s settle); growth ÷ connections is what one connection costs, allocator
# effects included. The examples are restarted before each idle run, so each backend figure
# is a fresh process's growth.
#
# Usage: bash bench/websocket.sh
# env: N_PLAIN, N_MIRROR, HOLD_SECS (default 6), ECHO_SECS (5), ECHO_CONNS (50),
#      SIZE (64), WINDOW (16), RUNOFF_BIN, WS_BENCH_BIN (the client; default: cargo build --release
#      --example ws-bench), KEEP_TMP=1
set -euo pipefail

LOG_TAG=websocket
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOLD_SECS="${HOLD_SECS:-6}"
ECHO_SECS="${ECHO_SECS:-5}"
WINDOW="${WINDOW:-16}"
ECHO_CONNS="${ECHO_CONNS:-50}"
SIZE="${SIZE:-64}"

# Every process started here inherits the limit; raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LIMIT="$(ulimit -n)"
N_PLAIN="${N_PLAIN:-$((LIMIT * 2 / 5))}"
N_MIRROR="${N_MIRROR:-$((LIMIT * 3 / 10))}"

apt_install_missing # nginx, curl, python3
bash "$REPO_ROOT/examples/setup.sh"
ensure_runoff_bin
if [[ -z "${WS_BENCH_BIN:-}" ]]; then
    log "building the client (cargo build --release --example ws-bench)"
    (cd "$REPO_ROOT" && cargo build --release --example ws-bench)
    WS_BENCH_BIN="$REPO_ROOT/target/release/examples/ws-bench"
fi
setup_tmp runoff-ws-bench

log "open-files limit $LIMIT: $N_PLAIN idle connections unmirrored, $N_MIRROR mirrored"

# ------------------------------------------------------------ backends ------
log "building examples/go"
(cd "$REPO_ROOT/examples/go" && go build -o "$TMP/go-example" .)
NODE_PORT="$(free_port)"
GO_PORT="$(free_port)"
NODE_PID=""
GO_PID=""

# fresh_backends: (re)start both examples, so that each idle run measures a backend that has
# not held connections before (freed memory would be reused, hiding the growth).
fresh_backends() {
    local pid
    for pid in $NODE_PID $GO_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PORT=$NODE_PORT node "$REPO_ROOT/examples/node/server.js" >>"$TMP/node.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    PORT=$GO_PORT "$TMP/go-example" >>"$TMP/go.log" 2>&1 &
    GO_PID=$!
    PIDS+=("$GO_PID")
    wait_http "http://127.0.0.1:$NODE_PORT/healthz" "$NODE_PID" "node example"
    wait_http "http://127.0.0.1:$GO_PORT/healthz" "$GO_PID" "go example"
}
fresh_backends


# start_runoff NAME PRIMARY [SHADOW]: runoff with one route, /ws and everything else to
# PRIMARY (node|go), mirrored to SHADOW with `websocket: true` when given; both backends'
# processes sampled. Sets RUNOFF_PID, RUNOFF_PORT, ADMIN_PORT.
start_runoff() {
    local name=$1 primary=$2 shadow=${3:-} mirror=""
    RUNOFF_PORT="$(free_port)"
    ADMIN_PORT="$(free_port)"
    [[ -n "$shadow" ]] && mirror="
    mirror: { to: $shadow, websocket: true, websocket_max_connections: 100000 }"
    cat >"$TMP/$name.yaml" <<EOF
listen: 127.0.0.1:$RUNOFF_PORT
server: { threads: 1, drain_timeout: 2s }
admin: { listen: 127.0.0.1:$ADMIN_PORT }
backends:
  node: { address: 127.0.0.1:$NODE_PORT, process: { pid: $NODE_PID } }
  go: { address: 127.0.0.1:$GO_PORT, process: { pid: $GO_PID } }
routes:
  - name: ws
    split: { $primary: 100 }$mirror
EOF
    launch_runoff "runoff ($name)" "$TMP/$name.yaml" "$TMP/$name.log" "$RUNOFF_PORT" "$ADMIN_PORT" /healthz
}

stop_runoff() {
    kill -TERM "$RUNOFF_PID" 2>/dev/null || true
    wait "$RUNOFF_PID" 2>/dev/null || true
}

# hold_idle NAME PID N URL: N idle WebSockets to URL; the RSS growth of PID (the proxy),
# node and go per connection go to IDLE[NAME.*].
declare -A IDLE
hold_idle() {
    local name=$1 pid=$2 n=$3 url=$4 out="$TMP/$1.hold" r0 n0 g0 r1 n1 g1 opened
    r0=$(rss_kib "$pid") n0=$(rss_kib "$NODE_PID") g0=$(rss_kib "$GO_PID")
    "$WS_BENCH_BIN" hold "$url" "$n" "$HOLD_SECS" >"$out" &
    local client=$!
    PIDS+=("$client")
    local deadline=$((SECONDS + 120))
    until grep -q '^open' "$out"; do
        kill -0 "$client" 2>/dev/null || die "$name: the client exited: $(cat "$out")"
        ((SECONDS < deadline)) || die "$name: connections not open after 120 s"
        sleep 0.2
    done
    sleep 2
    r1=$(rss_kib "$pid") n1=$(rss_kib "$NODE_PID") g1=$(rss_kib "$GO_PID")
    if [[ "$name" == mirrored ]]; then
        "$RUNOFF_BIN" report --admin "http://127.0.0.1:$ADMIN_PORT" --window 30s >"$TMP/mirrored.report" 2>&1 || true
    fi
    wait "$client"
    opened=$(awk '/^open/ { print $2 }' "$out")
    IDLE[$name.open]=$opened
    IDLE[$name.failed]=$(awk '/^open/ { print $4 }' "$out")
    per() { awk -v a="$1" -v b="$2" -v n="$opened" 'BEGIN { if (n + 0 == 0) print "n/a"; else printf "%.1f", (b - a) / n }'; }
    IDLE[$name.proxy]=$(per "$r0" "$r1")
    IDLE[$name.node]=$(per "$n0" "$n1")
    IDLE[$name.go]=$(per "$g0" "$g1")
    log "$name: $opened open (${IDLE[$name.failed]} failed); proxy ${IDLE[$name.proxy]} KiB/connection"
}

# echo_rate NAME URL WINDOW [PID]: messages/s of the echo client against URL, and PID's CPU
# µs per echoed message; into RATE[NAME], RATE[NAME.failed], RATE[NAME.cpu].
declare -A RATE
echo_rate() {
    local out t0=0 t1=0
    [[ -n "${4:-}" ]] && t0=$(cpu_ticks "$4")
    out=$("$WS_BENCH_BIN" echo "$2" "$ECHO_CONNS" "$ECHO_SECS" "$SIZE" "$3")
    [[ -n "${4:-}" ]] && t1=$(cpu_ticks "$4")
    RATE[$1]=$(awk '{ print $6 }' <<<"$out")
    RATE[$1.failed]=$(awk '{ print $8 }' <<<"$out")
    RATE[$1.cpu]=-
    [[ -n "${4:-}" ]] && RATE[$1.cpu]=$(cpu_us_per_req "$t0" "$t1" "$(awk '{ print $2 }' <<<"$out")")
    log "$1: ${RATE[$1]} msg/s (${RATE[$1.failed]} failed), proxy ${RATE[$1.cpu]} µs/msg"
}

# echo_all BACKEND URL PID: request/reply and pipelined runs against URL, as BACKEND.
echo_all() {
    echo_rate "$1.rr" "$2" 1 "${3:-}"
    echo_rate "$1.pipe" "$2" "$WINDOW" "${3:-}"
}

# ---------------------------------------------------------- measurement -----
for b in node go; do
    port=$NODE_PORT
    [[ $b == go ]] && port=$GO_PORT
    echo_all "$b-direct" "ws://127.0.0.1:$port/ws"
done

NGINX_PORT="$(free_port)"
start_nginx proxy "    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /node/ {
            proxy_pass http://127.0.0.1:$NODE_PORT/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection upgrade;
            proxy_read_timeout 1h;
        }
        location /go/ {
            proxy_pass http://127.0.0.1:$GO_PORT/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection upgrade;
            proxy_read_timeout 1h;
        }
    }" $((LIMIT - 100))
NGINX_WORKER=$(nginx_worker "$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/node/healthz" "$NGINX_PID" "nginx"
fresh_backends
hold_idle nginx "$NGINX_WORKER" "$N_PLAIN" "ws://127.0.0.1:$NGINX_PORT/node/ws"
echo_all node-nginx "ws://127.0.0.1:$NGINX_PORT/node/ws" "$NGINX_WORKER"
echo_all go-nginx "ws://127.0.0.1:$NGINX_PORT/go/ws" "$NGINX_WORKER"
kill -TERM "$NGINX_PID"
wait "$NGINX_PID" 2>/dev/null || true

fresh_backends
start_runoff to-node node
hold_idle node "$RUNOFF_PID" "$N_PLAIN" "ws://127.0.0.1:$RUNOFF_PORT/ws"
echo_all node-runoff "ws://127.0.0.1:$RUNOFF_PORT/ws" "$RUNOFF_PID"
stop_runoff

fresh_backends
start_runoff to-go go
hold_idle go "$RUNOFF_PID" "$N_PLAIN" "ws://127.0.0.1:$RUNOFF_PORT/ws"
echo_all go-runoff "ws://127.0.0.1:$RUNOFF_PORT/ws" "$RUNOFF_PID"
stop_runoff

fresh_backends
start_runoff mirrored node go
hold_idle mirrored "$RUNOFF_PID" "$N_MIRROR" "ws://127.0.0.1:$RUNOFF_PORT/ws"
echo_all node-mirrored "ws://127.0.0.1:$RUNOFF_PORT/ws" "$RUNOFF_PID"
stop_runoff

# -------------------------------------------------------------- report ------
echo
echo "runoff WebSocket bench: $(machine_summary); $(nginx_version); $(node --version) (ws), $(go version | cut -d' ' -f3) (gorilla/websocket)"
echo "open-files limit $LIMIT; idle connections held ${HOLD_SECS}s; echo: $ECHO_CONNS connections, ${SIZE}-byte messages, ${ECHO_SECS}s per run"
echo
echo "Idle connections: RSS growth per connection, KiB"
row() { printf '%-30s %7s %7s %10s %10s %10s\n' "$@"; }
row run open failed proxy node go
row "nginx -> node" "${IDLE[nginx.open]}" "${IDLE[nginx.failed]}" "${IDLE[nginx.proxy]}" "${IDLE[nginx.node]}" -
row "runoff -> node" "${IDLE[node.open]}" "${IDLE[node.failed]}" "${IDLE[node.proxy]}" "${IDLE[node.node]}" -
row "runoff -> go" "${IDLE[go.open]}" "${IDLE[go.failed]}" "${IDLE[go.proxy]}" - "${IDLE[go.go]}"
row "runoff -> node, mirror to go" "${IDLE[mirrored.open]}" "${IDLE[mirrored.failed]}" "${IDLE[mirrored.proxy]}" "${IDLE[mirrored.node]}" "${IDLE[mirrored.go]}"
echo "  proxy: per caller connection, both of its sockets (three when mirrored: caller, primary, shadow)"
echo
echo "Echo throughput: messages/s (ratio to direct), proxy CPU µs per echoed message"
erow() { printf '%-22s %-10s %10s %18s %8s %18s %8s %7s\n' "$@"; }
erow backend mode direct "nginx (ratio)" "µs/msg" "runoff (ratio)" "µs/msg" failed
for b in node go; do
    for m in rr pipe; do
        d=${RATE[$b-direct.$m]} n=${RATE[$b-nginx.$m]} r=${RATE[$b-runoff.$m]}
        mode="req/reply"
        [[ $m == pipe ]] && mode="window $WINDOW"
        erow "$b" "$mode" "$d" "$n ($(ratio "$n" "$d"))" "${RATE[$b-nginx.$m.cpu]}" "$r ($(ratio "$r" "$d"))" "${RATE[$b-runoff.$m.cpu]}" \
            "$((RATE[$b-direct.$m.failed] + RATE[$b-nginx.$m.failed] + RATE[$b-runoff.$m.failed]))"
    done
done
for m in rr pipe; do
    d=${RATE[node-direct.$m]} r=${RATE[node-mirrored.$m]}
    mode="req/reply"
    [[ $m == pipe ]] && mode="window $WINDOW"
    erow "node, mirror to go" "$mode" "$d" - - "$r ($(ratio "$r" "$d"))" "${RATE[node-mirrored.$m.cpu]}" "${RATE[node-mirrored.$m.failed]}"
done
echo
echo "runoff's own WebSocket table while the mirrored connections were open (runoff report):"
sed -n '/WebSockets$/,$p' "$TMP/mirrored.report"
