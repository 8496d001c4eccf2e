#!/usr/bin/env bash
# Load benchmark: the gateway's data plane against the upstream reached directly, NGINX and
# HAProxy, on loopback, in one command.
#
#   tests/bench/load.sh            # quick mode: about 6 minutes on 2 cores (after the build)
#   FULL=1 tests/bench/load.sh     # longer runs, more rounds: about 25 minutes
#
# What it measures (every figure is a median over alternating rounds, so machine drift hits
# every contestant alike):
#   1. max throughput, closed loop (wrk), for 0 B, 1 KiB, 16 KiB and 1 MiB bodies at 50 and 256
#      connections, with each process's CPU time per request, in all and in user space (the rest
#      is the kernel's: system calls and the loopback TCP stack, much the same for every proxy);
#   2. latency p50/p99/p99.9, open loop (bench-openloop) at one fixed rate per cell: half the
#      lowest proxy maximum from step 1, so every proxy runs at most at half its capacity;
#   3. the last of 10,000 routes (1,000 upstreams) against the last of 10 routes;
#   4. one config change per second during load (a route, then its upstream's targets): the
#      non-2xx responses and socket errors, which must be 0;
#   5. data-plane resident memory: idle, with 10,000 routes / 1,000 upstreams, and peak;
#   6. HTTP/2 downstream (h2load, h2c with prior knowledge, 0 B body): the data plane, NGINX and
#      HAProxy, each speaking HTTP/1.1 to the upstream;
#   7. TLS downstream (wrk over HTTPS, HTTP/1.1, 0 B and 1 KiB bodies), the data plane's TLS
#      listener with a throwaway ECDSA P-256 certificate, NGINX and HAProxy with the same one;
#   8. upstream connection reuse, from the data plane's /metrics (attempts vs connections
#      opened): in a window inside one steady keep-alive run, and over the whole run.
#
# Set-up: wrk (required), nginx, haproxy and h2load (skipped when absent) are installed with
# apt-get when missing and running as root; openssl makes the TLS certificate. The workspace is built in release mode (SKIP_BUILD=1 to
# skip). Everything listens on 127.0.0.1, ports BASE_PORT..BASE_PORT+17; only the processes
# this script starts are stopped, by PID. Output: $OUT_DIR (summary.md, results.tsv, logs/).
#
# Knobs: FULL, DURATION, ROUNDS, WARMUP, OPEN_DURATION, OPEN_ROUNDS, ROUTE_ROUNDS,
# CHURN_SECONDS, BODIES ("0 1k 16k 1m"), CONNS ("50 256"), CONTESTANTS
# ("direct dataplane nginx haproxy"), WRK_THREADS, H2_STREAMS (10 per connection), TLS_BODIES
# ("0 1k"), BASE_PORT (19080), OUT_DIR, SKIP_BUILD, CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FULL=${FULL:-0}
if [[ "$FULL" == 1 ]]; then
    DURATION=${DURATION:-5}; ROUNDS=${ROUNDS:-5}; WARMUP=${WARMUP:-2}
    OPEN_DURATION=${OPEN_DURATION:-5}; OPEN_ROUNDS=${OPEN_ROUNDS:-3}
    ROUTE_ROUNDS=${ROUTE_ROUNDS:-5}; CHURN_SECONDS=${CHURN_SECONDS:-60}
else
    DURATION=${DURATION:-2}; ROUNDS=${ROUNDS:-2}; WARMUP=${WARMUP:-1}
    OPEN_DURATION=${OPEN_DURATION:-3}; OPEN_ROUNDS=${OPEN_ROUNDS:-1}
    ROUTE_ROUNDS=${ROUTE_ROUNDS:-3}; CHURN_SECONDS=${CHURN_SECONDS:-10}
fi
BODIES=${BODIES:-"0 1k 16k 1m"}
CONNS=${CONNS:-"50 256"}
CONTESTANTS=${CONTESTANTS:-"direct dataplane nginx haproxy"}
WRK_THREADS=${WRK_THREADS:-1}
H2_STREAMS=${H2_STREAMS:-10}
TLS_BODIES=${TLS_BODIES:-"0 1k"}
BASE_PORT=${BASE_PORT:-19080}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gateway-load.XXXXXX")}
CORES=$(nproc)

UP_PORT=$BASE_PORT                 # the upstream behind every proxy
DIRECT_PORT=$((BASE_PORT + 1))     # a second upstream, hit directly
DP_PORT=$((BASE_PORT + 2))         # data plane A: 10 routes
DP_ADMIN=$((BASE_PORT + 3))
NGINX_PORT=$((BASE_PORT + 4))
HAPROXY_PORT=$((BASE_PORT + 5))
CP_REST=$((BASE_PORT + 6))         # control plane A
CP_GRPC=$((BASE_PORT + 7))
DPB_PORT=$((BASE_PORT + 8))        # data plane B: 10,000 routes, its own control plane B
DPB_ADMIN=$((BASE_PORT + 9))
CPB_REST=$((BASE_PORT + 10))
CPB_GRPC=$((BASE_PORT + 11))
DP_TLS=$((BASE_PORT + 12))         # TLS listeners: A's is the TLS scenario's, B's is unused
DPB_TLS=$((BASE_PORT + 13))
NGINX_TLS=$((BASE_PORT + 14))
HAPROXY_TLS=$((BASE_PORT + 15))
NGINX_H2=$((BASE_PORT + 16))       # h2c with prior knowledge
HAPROXY_H2=$((BASE_PORT + 17))

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# ------------------------------------------------------------------ tools
install_missing() {
    local pkgs=()
    have wrk || pkgs+=(wrk)
    have nginx || pkgs+=(nginx-light)
    have haproxy || pkgs+=(haproxy)
    have h2load || pkgs+=(nghttp2-client)
    have openssl || pkgs+=(openssl)
    ((${#pkgs[@]} > 0)) || return 0
    if [[ $(id -u) == 0 ]] && have apt-get; then
        log "installing ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "${pkgs[@]}" >"$OUT_DIR/apt.log" 2>&1 ||
            { apt-get update -q >>"$OUT_DIR/apt.log" 2>&1 &&
              apt-get install -y -q "${pkgs[@]}" >>"$OUT_DIR/apt.log" 2>&1; } ||
            log "apt-get failed (see $OUT_DIR/apt.log); continuing with what is installed"
    else
        log "missing ${pkgs[*]}; not root or no apt-get, so not installing them"
    fi
}
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/wrk" "$OUT_DIR/conf"
install_missing
have wrk || die "wrk is required (apt-get install wrk)"
have curl || die "curl is required"
for c in nginx haproxy; do
    if [[ " $CONTESTANTS " == *" $c "* ]] && ! have "$c"; then
        log "$c is not installed: skipping it"
        CONTESTANTS=${CONTESTANTS//$c/}
    fi
done
read -r -a ORDER <<<"$CONTESTANTS"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building release binaries (cargo build --release --workspace --bins)"
    (cd "$ROOT" && cargo build --release -q --workspace --bins) || die "build failed"
fi
for b in gateway-controlplane gateway-dataplane gatewayctl bench-upstream bench-openloop bench-config; do
    [[ -x "$BIN/$b" ]] || die "missing $BIN/$b (build with cargo build --release --workspace --bins)"
done
for ((p = BASE_PORT; p <= BASE_PORT + 17; p++)); do
    ! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use (set BASE_PORT)"
done

# ------------------------------------------------------------------ processes
STARTED=()  # "name:pid"
start() {   # start NAME cmd...   (sets LAST_PID)
    local name=$1; shift
    "$@" >"$OUT_DIR/logs/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED+=("$name:$LAST_PID")
}
alive() { [[ -r /proc/$1/status ]] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
stop_all() {
    set +e  # stop everything even if one stop fails
    local i entry pid n
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        entry=${STARTED[$i]}; pid=${entry#*:}
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((n = 0; n < 50; n++)); do alive "$pid" || break; sleep 0.1; done
            if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; fi
        fi
        wait "$pid" 2>/dev/null || true
    done
    STARTED=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_http() {  # wait_http NAME URL [seconds]
    local i
    for ((i = 0; i < ${3:-30} * 10; i++)); do
        [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "$2" 2>/dev/null) == 200 ]] && return 0
        sleep 0.1
    done
    tail -20 "$OUT_DIR/logs/$1.log" >&2 || true
    die "$1 did not answer 200 on $2"
}

# Process tree of a PID (nginx master and workers).
tree() {
    local p=$1 c t
    [[ -d /proc/$p ]] || return 0
    echo "$p"
    for t in /proc/"$p"/task/*/children; do
        for c in $(cat "$t" 2>/dev/null); do tree "$c"; done
    done
}
cpu_ticks() {  # "utime stime" over a process tree
    local p user=0 sys=0 u s
    for p in $(tree "$1"); do
        u=0 s=0
        read -r u s < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12, $13}') || true
        user=$((user + ${u:-0})); sys=$((sys + ${s:-0}))
    done
    echo "$user $sys"
}
# cpu_per_request "U0 S0" "U1 S1" REQUESTS -> "total_us user_us": CPU time per request, in all
# and in user space (the rest is the kernel's: system calls and the loopback TCP stack).
cpu_per_request() {
    awk -v a="$1" -v b="$2" -v hz="$HZ" -v n="$3" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        if (n <= 0) { print "0.0 0.0"; exit }
        printf "%.1f %.1f\n", (y[1] + y[2] - x[1] - x[2]) / hz * 1e6 / n, (y[1] - x[1]) / hz * 1e6 / n }'
}
mem_kib() {  # "rss hwm" summed over a process tree
    local p rss=0 hwm=0 a b
    for p in $(tree "$1"); do
        a=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null); b=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null)
        rss=$((rss + ${a:-0})); hwm=$((hwm + ${b:-0}))
    done
    echo "$rss $hwm"
}

# apply CP_REST FILE -> prints the new config version
apply_config() {
    curl -sS -f -m 120 -X POST -H 'content-type: application/json' --data-binary @"$2" \
        -D - -o /dev/null "http://127.0.0.1:$1/v1/apply" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-config-version" {print $2}'
}
put_json() {  # put_json CP_REST PATH JSON -> HTTP status
    curl -s -m 30 -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' \
        --data-binary "$3" "http://127.0.0.1:$1$2"
}
dp_version() {
    curl -s -m 5 "http://127.0.0.1:$1/config" | grep -o '"version": *[0-9]*' | head -1 | grep -o '[0-9]*$'
}
wait_version() {  # wait_version NAME PID DP_ADMIN VERSION
    local i v
    for ((i = 0; i < 1200; i++)); do
        v=$(dp_version "$3" || true)
        [[ -n "$v" && "$v" -ge "$4" ]] && return 0
        alive "$2" || break
        sleep 0.1
    done
    tail -20 "$OUT_DIR/logs/$1.log" >&2 || true
    die "$1 did not apply version $4"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $CORES cpus, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
    echo "load: $LOAD_BEFORE (before the run)"
    echo "git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo n/a)"
    echo "knobs: FULL=$FULL DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP OPEN_DURATION=$OPEN_DURATION OPEN_ROUNDS=$OPEN_ROUNDS ROUTE_ROUNDS=$ROUTE_ROUNDS CHURN_SECONDS=$CHURN_SECONDS WRK_THREADS=$WRK_THREADS"
    echo "contestants: ${ORDER[*]}; bodies: $BODIES; connections: $CONNS"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    have nginx && echo "nginx: $(nginx -v 2>&1)"
    have haproxy && echo "haproxy: $(haproxy -v 2>&1 | head -1)"
    have h2load && echo "h2load: $(h2load --version 2>&1 | head -1)"
    true
} >"$OUT_DIR/env.txt"
cat "$OUT_DIR/env.txt" >&2

# ------------------------------------------------------------------ start everything
declare -A URL PID
start upstream "$BIN/bench-upstream" "127.0.0.1:$UP_PORT"
UP_PID=$LAST_PID
start direct "$BIN/bench-upstream" "127.0.0.1:$DIRECT_PORT"
PID[direct]=$LAST_PID; URL[direct]="http://127.0.0.1:$DIRECT_PORT"
wait_http upstream "http://127.0.0.1:$UP_PORT/"
wait_http direct "http://127.0.0.1:$DIRECT_PORT/"

# Two control planes on embedded stores, each with one data plane: A serves 10 routes (the
# proxy comparisons), B 10,000 routes over 1,000 upstreams (route scale, churn, memory).
"$BIN/bench-config" --routes 10 --upstreams 10 --target "127.0.0.1:$UP_PORT" --catch-all >"$OUT_DIR/conf/config-10.json"
"$BIN/bench-config" --routes 10000 --upstreams 1000 --target "127.0.0.1:$UP_PORT" --catch-all >"$OUT_DIR/conf/config-10k.json"
export RUST_LOG=${RUST_LOG:-warn}
start controlplane-a "$BIN/gateway-controlplane" --data-dir "$OUT_DIR/cp-a" \
    --rest-listen "127.0.0.1:$CP_REST" --grpc-listen "127.0.0.1:$CP_GRPC"
start controlplane-b "$BIN/gateway-controlplane" --data-dir "$OUT_DIR/cp-b" \
    --rest-listen "127.0.0.1:$CPB_REST" --grpc-listen "127.0.0.1:$CPB_GRPC"
CPB_PID=$LAST_PID
wait_http controlplane-a "http://127.0.0.1:$CP_REST/readyz"
wait_http controlplane-b "http://127.0.0.1:$CPB_REST/readyz"
VERSION_A=$(apply_config "$CP_REST" "$OUT_DIR/conf/config-10.json")
t0=$(date +%s.%N)
VERSION_B=$(apply_config "$CPB_REST" "$OUT_DIR/conf/config-10k.json")
APPLY_10K_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b - a}')
[[ -n "$VERSION_A" && -n "$VERSION_B" ]] || die "applying the benchmark configs failed"
# One throwaway certificate for every TLS listener: the data plane A's (a Certificate resource,
# the default for any SNI), NGINX's and HAProxy's.
TLS_OK=0
if have openssl; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$OUT_DIR/conf/bench.key" \
        -out "$OUT_DIR/conf/bench.crt" >"$OUT_DIR/logs/openssl.log" 2>&1 &&
        cat "$OUT_DIR/conf/bench.crt" "$OUT_DIR/conf/bench.key" >"$OUT_DIR/conf/bench.pem" &&
        "$BIN/gatewayctl" --server "http://127.0.0.1:$CP_GRPC" certificate create bench \
            --cert "$OUT_DIR/conf/bench.crt" --key "$OUT_DIR/conf/bench.key" --sni localhost \
            --label default=true >"$OUT_DIR/logs/certificate.log" 2>&1 &&
        TLS_OK=1
    if [[ $TLS_OK == 1 ]]; then
        # The data plane must have the certificate before the TLS rounds: wait for its version.
        v=$(curl -s -D - -o /dev/null "http://127.0.0.1:$CP_REST/v1/routes" | tr -d '\r' |
            awk -F': ' 'tolower($1) == "x-config-version" {print $2}')
        [[ -n "$v" ]] && VERSION_A=$v
    else
        log "making or storing the TLS certificate failed (see $OUT_DIR/logs): no TLS scenario"
    fi
fi
# Data planes that have a TLS listener bind it by default: give each its own port.
TLS_A=(); TLS_B=()
if "$BIN/gateway-dataplane" --help | grep -q -- --tls-listen; then
    TLS_A=(--tls-listen "127.0.0.1:$DP_TLS"); TLS_B=(--tls-listen "127.0.0.1:$DPB_TLS")
fi
start dataplane "$BIN/gateway-dataplane" --listen "127.0.0.1:$DP_PORT" --admin-listen "127.0.0.1:$DP_ADMIN" \
    "${TLS_A[@]}" --control-plane "http://127.0.0.1:$CP_GRPC" --node-id bench-a --cache-dir ""
PID[dataplane]=$LAST_PID; URL[dataplane]="http://127.0.0.1:$DP_PORT"
start dataplane-10k "$BIN/gateway-dataplane" --listen "127.0.0.1:$DPB_PORT" --admin-listen "127.0.0.1:$DPB_ADMIN" \
    "${TLS_B[@]}" --control-plane "http://127.0.0.1:$CPB_GRPC" --node-id bench-b --cache-dir ""
DPB_PID=$LAST_PID
wait_version dataplane "${PID[dataplane]}" "$DP_ADMIN" "$VERSION_A"
wait_version dataplane-10k "$DPB_PID" "$DPB_ADMIN" "$VERSION_B"
log "control planes and data planes up (10k-route apply took ${APPLY_10K_S}s)"
sleep 1
read -r DP_IDLE_RSS _ < <(mem_kib "${PID[dataplane]}")
read -r DPB_IDLE_RSS _ < <(mem_kib "$DPB_PID")

if [[ " ${ORDER[*]} " == *" nginx "* ]]; then
    mkdir -p "$OUT_DIR/nginx/tmp"
    cat >"$OUT_DIR/conf/nginx.conf" <<EOF
# NGINX as the equivalent reverse proxy: one worker per core, upstream keep-alive, no access
# log; proxy_max_temp_file_size 0 keeps large bodies off the disk (streamed, like the gateway).
worker_processes $CORES;
daemon off;
pid $OUT_DIR/nginx/nginx.pid;
error_log $OUT_DIR/logs/nginx-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $OUT_DIR/nginx/tmp/body;
    proxy_temp_path $OUT_DIR/nginx/tmp/proxy;
    fastcgi_temp_path $OUT_DIR/nginx/tmp/fastcgi;
    uwsgi_temp_path $OUT_DIR/nginx/tmp/uwsgi;
    scgi_temp_path $OUT_DIR/nginx/tmp/scgi;
    upstream backend {
        server 127.0.0.1:$UP_PORT;
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        listen 127.0.0.1:$NGINX_H2 http2 backlog=4096;
$([[ $TLS_OK == 1 ]] && echo "        listen 127.0.0.1:$NGINX_TLS ssl backlog=4096;
        ssl_certificate $OUT_DIR/conf/bench.crt;
        ssl_certificate_key $OUT_DIR/conf/bench.key;
        ssl_session_cache shared:SSL:1m;")
        keepalive_requests 1000000;
        http2_max_requests 1000000;
        keepalive_timeout 60s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    start nginx nginx -p "$OUT_DIR/nginx/" -c "$OUT_DIR/conf/nginx.conf"
    PID[nginx]=$LAST_PID; URL[nginx]="http://127.0.0.1:$NGINX_PORT"
fi
if [[ " ${ORDER[*]} " == *" haproxy "* ]]; then
    cat >"$OUT_DIR/conf/haproxy.cfg" <<EOF
# HAProxy as the equivalent reverse proxy: one thread per core, server-side keep-alive and
# connection reuse, no logging.
global
    nbthread $CORES
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    bind 127.0.0.1:$HAPROXY_H2 proto h2
$([[ $TLS_OK == 1 ]] && echo "    bind 127.0.0.1:$HAPROXY_TLS ssl crt $OUT_DIR/conf/bench.pem alpn http/1.1")
    default_backend be
backend be
    server up1 127.0.0.1:$UP_PORT
EOF
    start haproxy haproxy -db -f "$OUT_DIR/conf/haproxy.cfg"
    PID[haproxy]=$LAST_PID; URL[haproxy]="http://127.0.0.1:$HAPROXY_PORT"
fi
for c in "${ORDER[@]}"; do wait_http "$c" "${URL[$c]}/"; done
wait_http dataplane-10k "http://127.0.0.1:$DPB_PORT/"

# ------------------------------------------------------------------ measurement helpers
RESULTS=$OUT_DIR/results.tsv
printf 'phase\tbody\tconns\tround\tcontestant\trps\tp50_ms\tp99_ms\tp999_ms\terrors\tcpu_us_per_req\tuser_us_per_req\n' >"$RESULTS"
HZ=$(getconf CLK_TCK)

path_of() { [[ "$1" == 0 ]] && echo / || echo "/$1"; }

# wrk_run URL CONNS SECONDS OUT [HOST]  -> "rps p50_ms p99_ms requests errors"
wrk_run() {
    local host=()
    [[ -n "${5:-}" ]] && host=(-H "Host: $5")
    wrk -t"$WRK_THREADS" -c"$2" -d"$3"s --latency "${host[@]}" "$1" >"$4" 2>&1 || true
    awk '
    function ms(v) { if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000;
                     if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0;
                     if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000;
                     return v + 0 }
    /^Requests\/sec:/ { rps = $2 }
    /requests in/ { reqs = $1 }
    $1 == "50%" { p50 = ms($2) }  $1 == "99%" { p99 = ms($2) }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { err += $NF }
    END { printf "%s %.3f %.3f %s %d\n", (rps == "" ? 0 : rps), p50, p99, (reqs == "" ? 0 : reqs), err }
    ' "$4"
}

# measure PHASE BODY CONNS ROUND NAME PID URL SECONDS [HOST]: one wrk run, one results row
measure() {
    local phase=$1 body=$2 conns=$3 round=$4 name=$5 pid=$6 url=$7 secs=$8 host=${9:-}
    local out=$OUT_DIR/wrk/$phase-$body-c$conns-r$round-$name.txt a b rps p50 p99 reqs errs cpu user
    a=$(cpu_ticks "$pid")
    read -r rps p50 p99 reqs errs < <(wrk_run "$url" "$conns" "$secs" "$out" "$host")
    b=$(cpu_ticks "$pid")
    read -r cpu user < <(cpu_per_request "$a" "$b" "$reqs")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\t%s\t%s\t%s\n' "$phase" "$body" "$conns" "$round" "$name" \
        "$rps" "$p50" "$p99" "$errs" "$cpu" "$user" >>"$RESULTS"
    log "$phase body=$body c=$conns r=$round $(printf '%-13s' "$name") rps=$rps p99=${p99}ms errors=$errs cpu=${cpu}us/req (user $user)"
}

# median COLUMN [awk filter]: the median of a results.tsv column over the matching rows
median() {
    awk -F'\t' -v col="$1" "NR > 1 && ($2) { print \$col }" "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

# ------------------------------------------------------------------ 1. closed loop
for body in $BODIES; do
    for conns in $CONNS; do
        path=$(path_of "$body")
        for c in "${ORDER[@]}"; do
            wrk_run "${URL[$c]}$path" "$conns" "$WARMUP" "$OUT_DIR/wrk/warmup-$body-c$conns-$c.txt" >/dev/null
        done
        for ((r = 1; r <= ROUNDS; r++)); do
            for c in "${ORDER[@]}"; do
                measure max "$body" "$conns" "$r" "$c" "${PID[$c]}" "${URL[$c]}$path" "$DURATION"
            done
        done
    done
done

# ------------------------------------------------------------------ 2. open loop
for body in $BODIES; do
    for conns in $CONNS; do
        path=$(path_of "$body")
        lowest=""
        for c in "${ORDER[@]}"; do
            [[ "$c" == direct ]] && continue
            m=$(median 6 "\$1 == \"max\" && \$2 == \"$body\" && \$3 == $conns && \$5 == \"$c\"")
            if [[ -z "$lowest" ]] || awk -v a="$m" -v b="$lowest" 'BEGIN{exit !(a < b)}'; then lowest=$m; fi
        done
        rate=$(awk -v m="$lowest" 'BEGIN{printf "%d", m / 2}')
        ((rate > 0)) || continue
        echo "$body $conns $rate" >>"$OUT_DIR/open-rates.txt"
        for ((r = 1; r <= OPEN_ROUNDS; r++)); do
            for c in "${ORDER[@]}"; do
                out=$OUT_DIR/wrk/open-$body-c$conns-r$r-$c.txt
                "$BIN/bench-openloop" --url "${URL[$c]}$path" --rate "$rate" --connections "$conns" \
                    --duration "$OPEN_DURATION" --warmup 0.5 >"$out" 2>&1 || true
                line=$(tail -1 "$out")
                if [[ "$line" != requests=* ]]; then
                    log "bench-openloop failed for $c: $line"
                    continue
                fi
                # requests=N rate=R errors=E non2xx=F late=L p50_ms=… p90_ms=… p99_ms=… p999_ms=… max_ms=…
                read -r o_rate o_p50 o_p99 o_p999 o_err < <(awk '{
                    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                    print v["rate"] + 0, v["p50_ms"] + 0, v["p99_ms"] + 0, v["p999_ms"] + 0, v["errors"] + v["non2xx"] }' <<<"$line")
                printf 'open\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$body" "$conns" "$r" "$c" \
                    "$o_rate" "$o_p50" "$o_p99" "$o_p999" "$o_err" >>"$RESULTS"
                log "open body=$body c=$conns rate=$rate $(printf '%-10s' "$c") $line"
            done
        done
    done
done

# ------------------------------------------------------------------ 3. route scale
read -r HOST_10 PATH_10 < <("$BIN/bench-config" --request 9)
read -r HOST_10K PATH_10K < <("$BIN/bench-config" --request 9999)
ROUTE_CONNS=${CONNS%% *}
wrk_run "${URL[dataplane]}$PATH_10" "$ROUTE_CONNS" "$WARMUP" "$OUT_DIR/wrk/warmup-routes-10.txt" "$HOST_10" >/dev/null
wrk_run "http://127.0.0.1:$DPB_PORT$PATH_10K" "$ROUTE_CONNS" "$WARMUP" "$OUT_DIR/wrk/warmup-routes-10k.txt" "$HOST_10K" >/dev/null
for ((r = 1; r <= ROUTE_ROUNDS; r++)); do
    measure routes 10 "$ROUTE_CONNS" "$r" routes-10 "${PID[dataplane]}" "${URL[dataplane]}$PATH_10" "$DURATION" "$HOST_10"
    measure routes 10000 "$ROUTE_CONNS" "$r" routes-10k "$DPB_PID" "http://127.0.0.1:$DPB_PORT$PATH_10K" "$DURATION" "$HOST_10K"
done

# ------------------------------------------------------------------ 6. HTTP/2 downstream
# h2load with prior knowledge (h2c) on each proxy's plain HTTP/2 listener; every proxy speaks
# HTTP/1.1 to the upstream. `direct` is left out: bench-upstream speaks HTTP/1.1 only.
declare -A H2_URL=([dataplane]="http://127.0.0.1:$DP_PORT/" [nginx]="http://127.0.0.1:$NGINX_H2/"
    [haproxy]="http://127.0.0.1:$HAPROXY_H2/")
# h2load_run URL CONNS SECONDS OUT -> "rps requests errors"
h2load_run() {
    h2load -t"$WRK_THREADS" -c"$2" -m"$H2_STREAMS" -D"$3" "$1" >"$4" 2>&1 || true
    awk '/^finished in/ { gsub(/,/, ""); rps = $4 }
         /^requests:/ { reqs = $8; err = $10 + $12 }
         /^status codes:/ { gsub(/,/, ""); err += $5 + $7 + $9 }
         END { printf "%s %s %d\n", (rps == "" ? 0 : rps), (reqs == "" ? 0 : reqs), err }' "$4"
}
H2_CONNS=${CONNS%% *}
if have h2load; then
    for c in "${ORDER[@]}"; do
        [[ -n "${H2_URL[$c]:-}" ]] || continue
        h2load_run "${H2_URL[$c]}" "$H2_CONNS" "$WARMUP" "$OUT_DIR/wrk/warmup-h2-$c.txt" >/dev/null
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        for c in "${ORDER[@]}"; do
            [[ -n "${H2_URL[$c]:-}" ]] || continue
            a=$(cpu_ticks "${PID[$c]}")
            read -r rps reqs errs < <(h2load_run "${H2_URL[$c]}" "$H2_CONNS" "$DURATION" "$OUT_DIR/wrk/h2-c$H2_CONNS-r$r-$c.txt")
            b=$(cpu_ticks "${PID[$c]}")
            read -r cpu user < <(cpu_per_request "$a" "$b" "$reqs")
            printf 'h2\t0\t%s\t%s\t%s\t%s\t-\t-\t-\t%s\t%s\t%s\n' "$H2_CONNS" "$r" "$c" "$rps" "$errs" "$cpu" "$user" >>"$RESULTS"
            log "h2 c=$H2_CONNS×$H2_STREAMS r=$r $(printf '%-10s' "$c") rps=$rps errors=$errs cpu=${cpu}us/req (user $user)"
        done
    done
else
    log "h2load is not installed: no HTTP/2 scenario"
fi

# ------------------------------------------------------------------ 7. TLS downstream
# wrk over HTTPS (HTTP/1.1, keep-alive: one handshake per connection) to each proxy's TLS
# listener, all with the same certificate; each proxy speaks plain HTTP/1.1 to the upstream.
declare -A TLS_URL=([dataplane]="https://127.0.0.1:$DP_TLS" [nginx]="https://127.0.0.1:$NGINX_TLS"
    [haproxy]="https://127.0.0.1:$HAPROXY_TLS")
if [[ $TLS_OK == 1 ]]; then
    for body in $TLS_BODIES; do
        path=$(path_of "$body")
        for c in "${ORDER[@]}"; do
            [[ -n "${TLS_URL[$c]:-}" ]] || continue
            wrk_run "${TLS_URL[$c]}$path" "$H2_CONNS" "$WARMUP" "$OUT_DIR/wrk/warmup-tls-$body-$c.txt" >/dev/null
        done
        for ((r = 1; r <= ROUNDS; r++)); do
            for c in "${ORDER[@]}"; do
                [[ -n "${TLS_URL[$c]:-}" ]] || continue
                measure tls "$body" "$H2_CONNS" "$r" "$c" "${PID[$c]}" "${TLS_URL[$c]}$path" "$DURATION"
            done
        done
    done
fi

# ------------------------------------------------------------------ 8. upstream connection reuse
# Over the whole run so far on data plane A: attempts sent vs connections opened (/metrics).
metric_sum() {  # metric_sum NAME: the sum of a counter over its label sets
    curl -s -m 5 "http://127.0.0.1:$DP_ADMIN/metrics" |
        awk -v n="$1" '$1 ~ "^" n "(_total)?[{ ]" || $1 == n || $1 == n "_total" { s += $NF } END { printf "%.0f", s }'
}
REUSE_SENT=$(metric_sum gateway_upstream_requests)
REUSE_OPENED=$(metric_sum gateway_upstream_connections_opened)
reuse_percent() {  # reuse_percent SENT OPENED
    awk -v s="$1" -v o="$2" 'BEGIN{ if (s > 0) printf "%.4f", 100 * (s - o) / s; else print "nan" }'
}
REUSE=$(reuse_percent "$REUSE_SENT" "$REUSE_OPENED")
log "upstream reuse: $REUSE_SENT attempts over $REUSE_OPENED connections opened: $REUSE %"

# Steady keep-alive load alone: the counters scraped twice while one wrk run is under way, so
# the requests cut off when a load generator stops (each end closes the upstream connections
# it had in flight) are outside the window.
STEADY_SECONDS=$((DURATION + 3))
wrk_run "${URL[dataplane]}$(path_of 0)" 50 "$STEADY_SECONDS" "$OUT_DIR/wrk/steady-reuse.txt" >/dev/null &
WRK_PID=$!
sleep 1
sent0=$(metric_sum gateway_upstream_requests); opened0=$(metric_sum gateway_upstream_connections_opened)
sleep $((STEADY_SECONDS - 2))
STEADY_SENT=$(($(metric_sum gateway_upstream_requests) - sent0))
STEADY_OPENED=$(($(metric_sum gateway_upstream_connections_opened) - opened0))
wait "$WRK_PID" || true
STEADY_REUSE=$(reuse_percent "$STEADY_SENT" "$STEADY_OPENED")
log "upstream reuse under steady load: $STEADY_SENT attempts over $STEADY_OPENED connections opened: $STEADY_REUSE %"

# ------------------------------------------------------------------ 4. config churn under load
# Data plane B under load on its last route; each second one change: the route itself (a new
# request header), then its upstream's targets (one target, then two), alternately.
ROUTE_JSON() { "$BIN/bench-config" --routes 10000 --upstreams 1000 --route 9999 --revision "$1"; }
UPSTREAM_NAME=u0999
before=$(dp_version "$DPB_ADMIN")
churn_out=$OUT_DIR/wrk/churn.txt
wrk_run "http://127.0.0.1:$DPB_PORT$PATH_10K" "$ROUTE_CONNS" "$((CHURN_SECONDS + 1))" "$churn_out" "$HOST_10K" >"$OUT_DIR/churn-wrk.txt" &
WRK_PID=$!
sleep 0.5
CHURN_WRITES=0; CHURN_WRITE_FAILS=0
for ((i = 1; i <= CHURN_SECONDS; i++)); do
    if ((i % 2)); then
        code=$(put_json "$CPB_REST" /v1/routes/r09999 "$(ROUTE_JSON "$i")")
    else
        # Two targets, then back to one: every write is a real change.
        targets="{\"address\":\"127.0.0.1:$UP_PORT\",\"weight\":1}"
        ((i % 4 == 2)) && targets="$targets,{\"address\":\"127.0.0.1:$DIRECT_PORT\",\"weight\":1}"
        code=$(put_json "$CPB_REST" "/v1/upstreams/$UPSTREAM_NAME" "{\"name\":\"$UPSTREAM_NAME\",\"targets\":[$targets]}")
    fi
    CHURN_WRITES=$((CHURN_WRITES + 1))
    [[ "$code" == 200 ]] || { CHURN_WRITE_FAILS=$((CHURN_WRITE_FAILS + 1)); log "churn write $i answered $code"; }
    sleep 1
done
wait "$WRK_PID" || true
read -r CHURN_RPS _ _ CHURN_REQS CHURN_ERRORS <"$OUT_DIR/churn-wrk.txt"
after=$(dp_version "$DPB_ADMIN")
CHURN_APPLIED=$((after - before))
log "churn: $CHURN_WRITES writes ($CHURN_WRITE_FAILS failed), data plane moved $CHURN_APPLIED versions, $CHURN_REQS requests, $CHURN_ERRORS non-2xx/socket errors"

# ------------------------------------------------------------------ 5. memory
read -r DP_RSS DP_HWM < <(mem_kib "${PID[dataplane]}")
read -r DPB_RSS DPB_HWM < <(mem_kib "$DPB_PID")
read -r CPB_RSS CPB_HWM < <(mem_kib "$CPB_PID")
declare -A PEER_MEM
for c in nginx haproxy; do [[ -n "${PID[$c]:-}" ]] && PEER_MEM[$c]=$(mem_kib "${PID[$c]}"); done

# ------------------------------------------------------------------ summary
# print_proxy_table PHASE: one row per body of PHASE, the data plane against NGINX and HAProxy.
print_proxy_table() {
    local phase=$1 c body r f cpu user bodies
    bodies=$(awk -F'\t' -v p="$phase" 'NR > 1 && $1 == p {print $2}' "$RESULTS" | awk '!seen[$0]++')
    printf '| body |'; for c in "${ORDER[@]}"; do [[ $c == direct ]] || printf ' %s |' "$c"; done
    printf ' dp/nginx | dp/haproxy |\n|---|'
    for c in "${ORDER[@]}"; do [[ $c == direct ]] || printf -- '---|'; done; printf -- '---|---|\n'
    for body in $bodies; do
        printf '| %s |' "$body"
        declare -A M=()
        for c in "${ORDER[@]}"; do
            [[ $c == direct ]] && continue
            f="\$1 == \"$phase\" && \$2 == \"$body\" && \$5 == \"$c\""
            M[$c]=$(median 6 "$f"); cpu=$(median 11 "$f"); user=$(median 12 "$f")
            printf ' %.0f (%s µs, user %s) |' "${M[$c]}" "$cpu" "$user"
        done
        r=$(ratio "${M[dataplane]:-nan}" "${M[nginx]:-nan}"); printf ' %s %s |' "$r" "$([[ $r == n/a ]] || verdict "$r >= 1.2")"
        r=$(ratio "${M[dataplane]:-nan}" "${M[haproxy]:-nan}"); printf ' %s %s |\n' "$r" "$([[ $r == n/a ]] || verdict "$r >= 1.1")"
    done
    echo
}
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
verdict() { if awk "BEGIN{exit !($1)}"; then echo met; else echo "**missed**"; fi; }
{
    echo "## Load benchmark ($(date -I), $CORES cores, $( [[ $FULL == 1 ]] && echo full || echo quick) mode)"
    echo
    echo "Medians of alternating rounds on one shared machine; compare ratios, not absolute figures."
    echo "Each proxy uses $CORES workers (NGINX worker_processes, HAProxy nbthread, the data plane's"
    echo "tokio workers). Load average before / after the run: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "### Max throughput, closed loop (wrk -t$WRK_THREADS, ${DURATION}s × $ROUNDS rounds), req/s and CPU µs per request (all, and user space)"
    echo
    printf '| body | conns |'; for c in "${ORDER[@]}"; do printf ' %s |' "$c"; done
    printf ' dp/direct | dp/nginx | dp/haproxy |\n|---|---|'
    for c in "${ORDER[@]}"; do printf -- '---|'; done; printf -- '---|---|---|\n'
    for body in $BODIES; do
        for conns in $CONNS; do
            printf '| %s | %s |' "$body" "$conns"
            declare -A M=()
            for c in "${ORDER[@]}"; do
                f="\$1 == \"max\" && \$2 == \"$body\" && \$3 == $conns && \$5 == \"$c\""
                M[$c]=$(median 6 "$f"); cpu=$(median 11 "$f"); user=$(median 12 "$f")
                printf ' %.0f (%s µs, user %s) |' "${M[$c]}" "$cpu" "$user"
            done
            dp=${M[dataplane]:-nan}
            printf ' %s |' "$(ratio "$dp" "${M[direct]:-nan}")"
            r=$(ratio "$dp" "${M[nginx]:-nan}"); printf ' %s %s |' "$r" "$([[ $r == n/a ]] || verdict "$r >= 1.2")"
            r=$(ratio "$dp" "${M[haproxy]:-nan}"); printf ' %s %s |\n' "$r" "$([[ $r == n/a ]] || verdict "$r >= 1.1")"
        done
    done
    echo
    echo "Targets: dataplane ≥ 1.2× NGINX, ≥ 1.1× HAProxy, ≥ 0.5× direct."
    echo
    echo "### Latency, open loop (bench-openloop, ${OPEN_DURATION}s × $OPEN_ROUNDS), p50 / p99 / p99.9 in ms"
    echo
    printf '| body | conns | rate |'; for c in "${ORDER[@]}"; do printf ' %s |' "$c"; done
    printf ' dp p99 ≤ haproxy p99 |\n|---|---|---|'; for c in "${ORDER[@]}"; do printf -- '---|'; done; printf -- '---|\n'
    while read -r body conns rate; do
        printf '| %s | %s | %s/s |' "$body" "$conns" "$rate"
        declare -A P99=()
        for c in "${ORDER[@]}"; do
            f="\$1 == \"open\" && \$2 == \"$body\" && \$3 == $conns && \$5 == \"$c\""
            P99[$c]=$(median 8 "$f")
            errs=$(median 10 "$f")
            printf ' %s / %s / %s%s |' "$(median 7 "$f")" "${P99[$c]}" "$(median 9 "$f")" \
                "$([[ "$errs" == 0 ]] || echo " ($errs errors)")"
        done
        if [[ -n "${P99[haproxy]:-}" && -n "${P99[dataplane]:-}" ]]; then
            printf ' %s |\n' "$(verdict "${P99[dataplane]} <= ${P99[haproxy]}")"
        else
            printf ' n/a |\n'
        fi
    done <"$OUT_DIR/open-rates.txt"
    echo
    echo "Rate: half the lowest proxy maximum of that cell, the same for every contestant."
    echo
    if have h2load; then
        echo "### HTTP/2 downstream (h2load -c$H2_CONNS -m$H2_STREAMS, h2c, 0 B, ${DURATION}s × $ROUNDS rounds), req/s and CPU µs per request (all, and user space)"
        echo
        print_proxy_table h2
    fi
    if [[ $TLS_OK == 1 ]]; then
        echo "### TLS downstream (wrk over HTTPS, HTTP/1.1, c=$H2_CONNS, ${DURATION}s × $ROUNDS rounds), req/s and CPU µs per request (all, and user space)"
        echo
        print_proxy_table tls
    fi
    echo "### Route scale, memory, config churn"
    echo
    echo "| measurement | value | target | |"
    echo "|---|---|---|---|"
    r10=$(median 6 '$1 == "routes" && $5 == "routes-10"')
    r10k=$(median 6 '$1 == "routes" && $5 == "routes-10k"')
    r=$(ratio "$r10k" "$r10")
    printf '| last of 10 routes, req/s (c=%s) | %.0f | | |\n' "$ROUTE_CONNS" "$r10"
    printf '| last of 10,000 routes (1,000 upstreams), req/s | %.0f | | |\n' "$r10k"
    printf '| 10,000 routes ÷ 10 routes | %s | ≥ 0.95 | %s |\n' "$r" "$([[ $r == n/a ]] || verdict "$r >= 0.95")"
    printf '| data plane RSS idle, 10 routes | %s MB | ≤ 15 MB | %s |\n' "$(mb "$DP_IDLE_RSS")" "$(verdict "$DP_IDLE_RSS * 1024 <= 15000000")"
    printf '| data plane RSS idle, 10,000 routes / 1,000 upstreams | %s MB | ≤ 60 MB | %s |\n' "$(mb "$DPB_IDLE_RSS")" "$(verdict "$DPB_IDLE_RSS * 1024 <= 60000000")"
    printf '| data plane RSS after the run / peak, 10 routes | %s / %s MB | | |\n' "$(mb "$DP_RSS")" "$(mb "$DP_HWM")"
    printf '| data plane RSS after the run / peak, 10,000 routes | %s / %s MB | | |\n' "$(mb "$DPB_RSS")" "$(mb "$DPB_HWM")"
    printf '| control plane RSS / peak, 10,000 routes, embedded store | %s / %s MB | | |\n' "$(mb "$CPB_RSS")" "$(mb "$CPB_HWM")"
    for c in nginx haproxy; do
        [[ -n "${PEER_MEM[$c]:-}" ]] || continue
        read -r rss hwm <<<"${PEER_MEM[$c]}"
        printf '| %s RSS after the run / peak (all processes) | %s / %s MB | | |\n' "$c" "$(mb "$rss")" "$(mb "$hwm")"
    done
    printf '| upstream connection reuse under steady keep-alive load (c=50, %s s window inside one run: %s attempts, %s connections opened) | %s %% | ≥ 99.9 %% | %s |\n' \
        "$((STEADY_SECONDS - 2))" "$STEADY_SENT" "$STEADY_OPENED" "$STEADY_REUSE" "$([[ $STEADY_REUSE == nan ]] && echo n/a || verdict "$STEADY_REUSE >= 99.9")"
    printf '| upstream connection reuse, data plane A over the whole run, load-generator ends included (%s attempts, %s connections opened) | %s %% | | |\n' \
        "$REUSE_SENT" "$REUSE_OPENED" "$REUSE"
    printf '| POST /v1/apply of 10,000 routes + 1,000 upstreams (embedded store) | %s s | | |\n' "$APPLY_10K_S"
    printf '| config churn: %s writes in %s s under load (%s failed), data plane applied %s versions | %s requests, %s non-2xx or socket errors | 0 | %s |\n' \
        "$CHURN_WRITES" "$CHURN_SECONDS" "$CHURN_WRITE_FAILS" "$CHURN_APPLIED" "$CHURN_REQS" "$CHURN_ERRORS" "$(verdict "$CHURN_ERRORS == 0")"
    echo
    echo "Raw data: \`$OUT_DIR\` (results.tsv, wrk/, logs/, conf/)."
} >"$OUT_DIR/summary.md"
echo
cat "$OUT_DIR/summary.md"
