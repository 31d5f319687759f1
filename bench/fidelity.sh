#!/usr/bin/env bash
# bench/fidelity.sh — does runoff's candidate ÷ baseline comparison agree with measuring the two
# backends directly, whichever of them is the primary? On 127.0.0.1 only, bounded in time.
#
# Backends: the example apps, examples/node (Express) and examples/go (net/http), on free ports
# (needs `bash examples/setup.sh`), all cases on GET /api/users?country=DE&limit=50&sort=-score.
# Load: oha, open loop (-q RATE --latency-correction, so a stall shows as latency) unless said.
# For each RATE (default 200 and 500 req/s), each case DURATION s (default 15), runoff
# `threads: 1`, a fresh runoff per case (its figures are since start):
#   direct R       both backends measured at once, oha -q R to each        -> go/node p50, p99, mean
#   direct R/2     the same at R/2 each (what each backend gets in a 50/50 split)
#   mirror n->g    oha -q R -> runoff: node serves, go gets copies         -> runoff's go/node ratios
#   mirror g->n    the same with the roles swapped (go serves, node shadows)
#   split 50/50    oha -q R -> runoff, node 50 / go 50                      -> compared with direct R/2
# Then a closed loop (oha -c 2, no rate: each client waits for its answer, as `wrk -c2` does):
#   mirror c2      through runoff, node serves, go shadows: must be flagged as biased
#   paced c2       the same with `mirror: { pacing: matched }`
#   direct c2      both backends at once, 2 clients each (a closed loop has no rate of its
#                  own, so this is a reference, not an equal load), compared with paced c2
# runoff's ratios are its upstream-side figures (/api/summary `comparison`, each leg from its
# own request going upstream to its last byte); the paired median (same requests) is shown too.
# Printed: each ratio next to the direct one and their relative difference; the role bias (the
# mirror's go/node ratio with go as the shadow vs with go as the primary); the closed loop's
# bias flag and paced drops. Targets (README): within 10% of direct at 200 req/s, 15% at 500,
# role bias under 5%, the closed loop flagged, pacing within 15% of direct. A line that misses
# its target says MISS; STRICT=1 makes the script exit 1 when any does.
#
# Usage: bash bench/fidelity.sh
# env: RATES ("200 500"), DURATION (s, 15), WARMUP (s, 3), RUNOFF_BIN, KEEP_TMP=1, STRICT=1
set -euo pipefail

RATES="${RATES:-200 500}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
CONNS=16
REQ_PATH='/api/users?country=DE&limit=50&sort=-score'
LOG_TAG=fidelity-bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- tools -----
install_missing() {
    apt_install_missing # curl, python3 (and nginx, unused here)
    bash "$REPO_ROOT/examples/setup.sh"
    if ! command -v oha >/dev/null; then
        log "installing oha (cargo install oha --locked)"
        cargo install oha --locked || die "could not build oha (cargo install oha --locked failed)"
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}
install_missing
ensure_runoff_bin
setup_tmp runoff-fidelity-bench

# ------------------------------------------------------------- backends -----
NODE_PORT="$(free_port)"
GO_PORT="$(free_port)"
(cd "$REPO_ROOT/examples/go" && GOTOOLCHAIN=local GOPROXY=off go build -o "$TMP/go-example" .) ||
    die "go build in examples/go failed"
PORT=$NODE_PORT HOST=127.0.0.1 node "$REPO_ROOT/examples/node/server.js" >"$TMP/node.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$NODE_PORT/healthz" "$!" "the node example"
PORT=$GO_PORT HOST=127.0.0.1 "$TMP/go-example" >"$TMP/go.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$GO_PORT/healthz" "$!" "the go example"

# ---------------------------------------------------------- measurement -----
# oha_run OUT URL SECONDS [RATE]: oha's JSON report of a run, open loop at RATE, else a
# closed loop of 2 clients.
oha_run() {
    local out=$1 url=$2 secs=$3 rate=${4:-}
    if [[ -n "$rate" ]]; then
        oha -z "${secs}s" -q "$rate" --latency-correction -c "$CONNS" --no-tui \
            --output-format json "$url" >"$out"
    else
        oha -z "${secs}s" -c 2 --no-tui --output-format json "$url" >"$out"
    fi
}

# oha_stats OUT: "p50 p99 mean" in ms, and the share of non-2xx/errors as a 4th field.
oha_stats() {
    python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p, s = d["latencyPercentiles"], d["summary"]
ok = sum(v for k, v in d.get("statusCodeDistribution", {}).items() if k.startswith("2"))
errs = sum(d.get("errorDistribution", {}).values())
total = ok + errs + sum(v for k, v in d.get("statusCodeDistribution", {}).items() if not k.startswith("2"))
print(f'{p["p50"]*1000:.3f} {p["p99"]*1000:.3f} {s["average"]*1000:.3f} {(total-ok)/max(total,1):.4f}')
EOF
}

# direct NAME SECONDS [RATE]: both backends at once; prints "p50 p99 mean" of go ÷ node.
direct() {
    local name=$1 secs=$2 rate=${3:-}
    oha_run "$TMP/$name-warm-node.json" "http://127.0.0.1:$NODE_PORT$REQ_PATH" "$WARMUP" "$rate" &
    oha_run "$TMP/$name-warm-go.json" "http://127.0.0.1:$GO_PORT$REQ_PATH" "$WARMUP" "$rate"
    wait
    oha_run "$TMP/$name-node.json" "http://127.0.0.1:$NODE_PORT$REQ_PATH" "$secs" "$rate" &
    oha_run "$TMP/$name-go.json" "http://127.0.0.1:$GO_PORT$REQ_PATH" "$secs" "$rate"
    wait
    read -r np nq nm _ < <(oha_stats "$TMP/$name-node.json")
    read -r gp gq gm _ < <(oha_stats "$TMP/$name-go.json")
    echo "$(ratio "$gp" "$np") $(ratio "$gq" "$nq") $(ratio "$gm" "$nm")"
}

# start_runoff NAME CONFIG ADMIN_PORT: `runoff run` in the background until /readyz answers;
# sets RUNOFF_PID.
start_runoff() {
    "$RUNOFF_BIN" check --config "$2" >&2 || die "runoff rejected $2"
    RUST_LOG=warn "$RUNOFF_BIN" run --config "$2" >>"$TMP/$1.log" 2>&1 &
    RUNOFF_PID=$!
    PIDS+=("$RUNOFF_PID")
    wait_http "http://127.0.0.1:$3/readyz" "$RUNOFF_PID" "runoff ($1)"
}

# through NAME ROUTE_YAML SECONDS [RATE]: a fresh runoff (threads 1) with the route, warmed up
# with a short run first, then measured; prints "p50 p99 mean paired ahead copies paced" where
# the first three are go ÷ node (upstream-side), paired the paired median go ÷ node, ahead the
# share of copies sent ahead of the primary, paced the share of copies dropped as paced.
through() {
    local name=$1 route=$2 secs=$3 rate=${4:-}
    local port admin cfg
    port="$(free_port)"
    admin="$(free_port)"
    cfg="$TMP/$name.yaml"
    cat >"$cfg" <<EOF
listen: 127.0.0.1:$port
server: { threads: 1, drain_timeout: 2s, upgrade_sock: $TMP/$name.sock }
admin: { listen: 127.0.0.1:$admin }
backends:
  node: { address: "127.0.0.1:$NODE_PORT" }
  go: { address: "127.0.0.1:$GO_PORT" }
routes:
  - name: api
$route
EOF
    # A warm-up through runoff, then a fresh instance for the measured run (a reload would
    # keep the warm-up in the figures).
    start_runoff "$name" "$cfg" "$admin"
    oha_run "$TMP/$name-warm.json" "http://127.0.0.1:$port$REQ_PATH" "$WARMUP" "$rate"
    kill -TERM "$RUNOFF_PID"
    wait "$RUNOFF_PID" 2>/dev/null || true
    start_runoff "$name" "$cfg" "$admin"
    oha_run "$TMP/$name.json" "http://127.0.0.1:$port$REQ_PATH" "$secs" "$rate"
    sleep 1 # copies settle
    curl -sf "http://127.0.0.1:$admin/api/summary?window=600s" >"$TMP/$name-summary.json"
    kill -TERM "$RUNOFF_PID"
    wait "$RUNOFF_PID" 2>/dev/null || true
    python3 - "$TMP/$name-summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
r = s["routes"][0]
c = r["comparison"]
cand = (c.get("candidate") or {}).get("backend")
def flip(x):
    # runoff's ratios are candidate ÷ baseline; print go ÷ node.
    if x is None: return "-"
    return f"{x:.4f}" if cand == "go" else f"{1/x:.4f}"
m = r.get("mirror")
paired = "-"
if m and m["total"]["ratio_p50"]:
    # shadow ÷ primary; go ÷ node when go is the shadow.
    v = m["total"]["ratio_p50"]
    paired = f"{v:.4f}" if m["to"] == "go" else f"{1/v:.4f}"
ahead = paced = "-"
if m:
    t = m["pace_total"]
    ahead = f'{t["ahead"]/max(t["copies"],1):.4f}'
    paced = f'{(m["copies"]-t["copies"])/max(m["copies"],1):.4f}'
print(flip(c.get("p50_ratio")), flip(c.get("p99_ratio")), flip(c.get("mean_ratio")), paired, ahead, paced)
EOF
}

# off A B LIMIT: the relative difference of runoff's ratio A from the direct ratio B, in
# percent, and OK or MISS against LIMIT (%).
off() {
    awk -v a="$1" -v b="$2" -v lim="$3" 'BEGIN {
        if (a == "-" || b == "-" || a == "n/a" || b == "n/a" || b + 0 == 0) { print "n/a"; exit }
        d = (a / b - 1) * 100; s = (d < 0 ? -d : d) <= lim ? "OK" : "MISS"
        printf "%+.1f%% %s", d, s }'
}

MISSES=0
row() { # CASE RATE KIND RUNOFF DIRECT LIMIT
    local verdict
    verdict="$(off "$4" "$5" "$6")"
    [[ "$verdict" == *MISS* ]] && MISSES=$((MISSES + 1))
    printf '%-14s %5s  %-5s  runoff %-7s direct %-7s %s\n' "$1" "$2" "$3" "$4" "$5" "$verdict"
}

MIRROR_NG="    split: { node: 100 }
    mirror: { to: go, percent: 100 }"
MIRROR_GN="    split: { go: 100 }
    mirror: { to: node, percent: 100 }"
SPLIT="    split: { node: 50, go: 50 }"

log "machine: $(machine_summary); oha $(oha --version | awk '{print $2}'); runoff $("$RUNOFF_BIN" --version | awk '{print $2}')"
echo "go ÷ node latency ratios: runoff's (upstream-side) next to direct; DURATION=${DURATION}s per case"
for rate in $RATES; do
    limit=10
    ((rate > 200)) && limit=15
    half=$((rate / 2))
    log "rate $rate: direct"
    read -r dp dq dm < <(direct "direct-$rate" "$DURATION" "$rate")
    read -r hp hq hm < <(direct "direct-$half" "$DURATION" "$half")
    log "rate $rate: mirror node->go"
    read -r ap aq am apair _ _ < <(through "mirror-ng-$rate" "$MIRROR_NG" "$DURATION" "$rate")
    log "rate $rate: mirror go->node"
    read -r bp bq bm bpair _ _ < <(through "mirror-gn-$rate" "$MIRROR_GN" "$DURATION" "$rate")
    log "rate $rate: split 50/50"
    read -r sp sq sm _ _ _ < <(through "split-$rate" "$SPLIT" "$DURATION" "$rate")
    for k in p50:ap:dp p99:aq:dq mean:am:dm; do
        IFS=: read -r kind a d <<<"$k"
        row "mirror n->g" "$rate" "$kind" "${!a}" "${!d}" "$limit"
    done
    row "  paired" "$rate" "p50" "$apair" "$dp" "$limit"
    for k in p50:bp:dp p99:bq:dq mean:bm:dm; do
        IFS=: read -r kind a d <<<"$k"
        row "mirror g->n" "$rate" "$kind" "${!a}" "${!d}" "$limit"
    done
    row "  paired" "$rate" "p50" "$bpair" "$dp" "$limit"
    for k in p50:sp:hp p99:sq:hq mean:sm:hm; do
        IFS=: read -r kind a d <<<"$k"
        row "split 50/50" "$rate" "$kind" "${!a}" "${!d}" "$limit"
    done
    # Role bias: the same comparison with the roles swapped.
    row "role bias" "$rate" "p50" "$ap" "$bp" 5
    row "role bias" "$rate" "mean" "$am" "$bm" 5
done

log "closed loop (2 clients): mirror node->go"
read -r mp mq mm mpair mahead _ < <(through "mirror-c2" "$MIRROR_NG" "$DURATION")
log "closed loop: mirror node->go, pacing: matched"
PACED="    split: { node: 100 }
    mirror: { to: go, percent: 100, pacing: matched }"
read -r pp pq pm ppair pahead ppaced < <(through "paced-c2" "$PACED" "$DURATION")
# A closed loop has no rate of its own: each backend's latency depends on the pace it is
# driven at. The direct reference: both backends at once, each under its own closed loop of 2
# clients. (Open loop at the pace the loop reached through runoff saturates this 2-core box.)
log "closed loop: direct, both backends at once, 2 clients each"
read -r cp cq cm < <(direct "direct-c2" "$DURATION")
echo
echo "closed loop, 2 clients (oha -c 2, as wrk -c2), node serves, go shadows; direct: 2 clients on each backend at once:"
flag=MISS
awk -v s="$mahead" 'BEGIN { exit !(s + 0 > 0.05) }' && flag=OK
[[ "$flag" == MISS ]] && MISSES=$((MISSES + 1))
printf '%-14s %5s  %-5s  runoff %-7s direct %-7s copies sent ahead: %s (flagged above 5%%: %s)\n' \
    "mirror c2" "-" "p50" "$mp" "$cp" "$mahead" "$flag"
row "paced c2" "-" "p50" "$pp" "$cp" 15
row "paced c2" "-" "mean" "$pm" "$cm" 15
echo "paced c2: copies dropped as paced: $ppaced, sent ahead: $pahead; paired p50 $ppair"
echo
echo "misses: $MISSES"
if [[ -n "${STRICT:-}" && "$MISSES" -gt 0 ]]; then
    exit 1
fi
