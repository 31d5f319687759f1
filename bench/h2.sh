#!/usr/bin/env bash
# bench/h2.sh — HTTP/2 through runoff against nginx and direct, in one run, on 127.0.0.1 only.
#
# Targets (h2load -t1 -c16 -m10, $DURATION s after a 2 s warm-up; each proxy 1 thread/worker):
#   direct       h2load (h2c) -> backend nginx (h2c)                       ceiling: no proxy
#   runoff-h2c   h2load (h2c) -> runoff -> backend nginx (HTTP/1.1, keep-alive)
#   runoff-tls   h2load (h2 over TLS, ALPN) -> runoff -> backend nginx (HTTP/1.1)
#   runoff-up2   h2load (h2c) -> runoff -> backend nginx (h2c: protocol: h2c, max_streams 100)
#   nginx-h2c    h2load (h2c) -> nginx (http2) -> backend nginx (HTTP/1.1, keepalive 64)
#   nginx-tls    h2load (h2 over TLS) -> nginx (ssl http2) -> backend nginx (HTTP/1.1)
# nginx cannot speak HTTP/2 to an upstream (outside grpc_pass), so runoff-up2 has no nginx
# twin. Reported: req/s, p99 (from h2load's per-request log), the proxy's CPU µs per request,
# and runoff ÷ nginx ratios for the same caller protocol. Noisy: compare within one run.
#
# Usage: bash bench/h2.sh        env: DURATION (s, default 10), RUNOFF_BIN, KEEP_TMP=1
set -euo pipefail

DURATION="${DURATION:-10}"
LOG_TAG=h2bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v h2load >/dev/null || {
    log "installing nghttp2-client (h2load)"
    sudo_cmd=""
    [[ "$(id -u)" -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y nghttp2-client
}
apt_install_missing openssl
ensure_runoff_bin
setup_tmp runoff-h2bench

# A self-signed certificate for the TLS listeners (h2load does not verify it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" \
    -keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null

BACKEND_H1="$(free_port)"; BACKEND_H2="$(free_port)"
NGINX_H2C="$(free_port)"; NGINX_TLS="$(free_port)"
RUNOFF_H2C="$(free_port)"; RUNOFF_TLS="$(free_port)"; RUNOFF_ADMIN="$(free_port)"
UP2_H2C="$(free_port)"; UP2_ADMIN="$(free_port)"

start_nginx backend "    server {
        listen 127.0.0.1:$BACKEND_H1;
        listen 127.0.0.1:$BACKEND_H2 http2;
        location / { return 200 \"ok\\n\"; }
    }"
BACKEND_MASTER=$NGINX_PID
wait_http "http://127.0.0.1:$BACKEND_H1/" "$BACKEND_MASTER" "backend nginx"

start_nginx proxy "    upstream backend {
        server 127.0.0.1:$BACKEND_H1;
        keepalive 64;
        keepalive_requests 100000;
    }
    server {
        listen 127.0.0.1:$NGINX_H2C http2;
        listen 127.0.0.1:$NGINX_TLS ssl http2;
        ssl_certificate $TMP/tls.crt;
        ssl_certificate_key $TMP/tls.key;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
PROXY_MASTER=$NGINX_PID
sleep 0.5

cat >"$TMP/runoff.yaml" <<YAML
listen: 127.0.0.1:$RUNOFF_H2C
listen_tls:
  - { address: 127.0.0.1:$RUNOFF_TLS, cert: $TMP/tls.crt, key: $TMP/tls.key }
server: { threads: 1, drain_timeout: 2s }
admin: { listen: 127.0.0.1:$RUNOFF_ADMIN }
backends:
  fast: { address: 127.0.0.1:$BACKEND_H1 }
routes:
  - name: bench
    split: { fast: 100 }
YAML
launch_runoff runoff "$TMP/runoff.yaml" "$TMP/runoff.log" "$RUNOFF_H2C" "$RUNOFF_ADMIN"
RUNOFF_MAIN=$RUNOFF_PID

cat >"$TMP/up2.yaml" <<YAML
listen: 127.0.0.1:$UP2_H2C
server: { threads: 1, drain_timeout: 2s }
admin: { listen: 127.0.0.1:$UP2_ADMIN }
backends:
  fast: { address: 127.0.0.1:$BACKEND_H2, protocol: h2c }
routes:
  - name: bench
    split: { fast: 100 }
YAML
launch_runoff runoff-up2 "$TMP/up2.yaml" "$TMP/up2.log" "$UP2_H2C" "$UP2_ADMIN"
RUNOFF_UP2=$RUNOFF_PID

ROWS=()
declare -A RPS P99 CPU

# h2bench NAME URL CPU_PID ('' = no proxy)
h2bench() {
    local name=$1 url=$2 cpu_pid=$3 out="$TMP/h2load-$1.txt" reqlog="$TMP/h2load-$1.log"
    log "$name: warm-up 2s, then ${DURATION}s measured"
    local t0=0 t1=0
    [[ -n "$cpu_pid" ]] && t0="$(cpu_ticks "$cpu_pid")"
    h2load -t1 -c16 -m10 --warm-up-time=2 -D "$DURATION" --log-file="$reqlog" "$url" >"$out" 2>&1 ||
        { cat "$out" >&2; die "h2load failed for $name"; }
    [[ -n "$cpu_pid" ]] && t1="$(cpu_ticks "$cpu_pid")"
    local done rps p99 failed cpu_us
    done="$(awk '/^requests:/ { print $8 }' "$out")"
    rps="$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$out")"
    failed="$(awk '/^requests:/ { print $10 }' "$out")"
    # The per-request log: start (µs), status, duration (µs); p99 of the durations.
    p99="$(awk '{ print $3 }' "$reqlog" | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] / 1000 }')"
    [[ -n "$done" && -n "$rps" ]] || { cat "$out" >&2; die "could not parse h2load output for $name"; }
    if [[ -n "$cpu_pid" ]]; then cpu_us="$(cpu_us_per_req "$t0" "$t1" "$done")"; else cpu_us="-"; fi
    RPS[$name]=$rps P99[$name]=$p99 CPU[$name]=$cpu_us
    ROWS+=("$(printf '%-11s %12s %9s %16s %9s %10s' "$name" "$rps" "$p99" "$cpu_us" "${failed:-0}" "$done")")
}

PROXY_WORKER="$(nginx_worker "$PROXY_MASTER")"
h2bench direct "http://127.0.0.1:$BACKEND_H2/" ""
h2bench runoff-h2c "http://127.0.0.1:$RUNOFF_H2C/" "$RUNOFF_MAIN"
h2bench nginx-h2c "http://127.0.0.1:$NGINX_H2C/" "$PROXY_WORKER"
h2bench runoff-tls "https://127.0.0.1:$RUNOFF_TLS/" "$RUNOFF_MAIN"
h2bench nginx-tls "https://127.0.0.1:$NGINX_TLS/" "$PROXY_WORKER"
h2bench runoff-up2 "http://127.0.0.1:$UP2_H2C/" "$RUNOFF_UP2"

echo
echo "machine: $(machine_summary)"
echo "note:    h2load, the backend nginx and the proxies share these cores (loopback)"
echo
printf '%-11s %12s %9s %16s %9s %10s\n' target req/s p99_ms proxy_cpu_us/req failed requests
for row in "${ROWS[@]}"; do echo "$row"; done
echo
for pair in "h2c runoff-h2c nginx-h2c" "tls runoff-tls nginx-tls"; do
    set -- $pair
    echo "runoff/nginx ($1): req/s $(ratio "${RPS[$2]}" "${RPS[$3]}")  p99 $(ratio "${P99[$2]}" "${P99[$3]}")  cpu/req $(ratio "${CPU[$2]}" "${CPU[$3]}")"
done
echo "runoff-h2c/direct: req/s $(ratio "${RPS[runoff-h2c]}" "${RPS[direct]}")  p99 $(ratio "${P99[runoff-h2c]}" "${P99[direct]}")"
