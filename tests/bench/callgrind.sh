#!/usr/bin/env bash
# Instructions per request through the data plane, counted by valgrind's callgrind: the same
# figure on every run, however busy the machine is, so it shows what a change to the hot path
# is worth when wall-clock load tests are too noisy to tell.
#
#   tests/bench/callgrind.sh                 # N=2000 requests, 0 B body, one keep-alive connection
#   N=5000 BODY=1k tests/bench/callgrind.sh
#   STRACE=1 tests/bench/callgrind.sh        # also system calls per request (strace -c -f)
#   HTTP=2 tests/bench/callgrind.sh          # over HTTP/2 (h2c, prior knowledge), sent by h2load
#
# It starts a fixed-response upstream (bench-upstream), a control plane on an embedded store
# with the 10-route benchmark config (bench-config), and the release data plane under
# `valgrind --tool=callgrind` with one proxy worker. After WARMUP requests (the pools are warm,
# the lazy statics are built) it zeroes the counters (`callgrind_control -z`), sends N
# sequential keep-alive requests with curl (one connection, `/path?[1-N]`), dumps the counters
# (`callgrind_control -d`), and divides the instructions (Ir) of the whole process, every
# thread, by N. The dump is kept; `callgrind_annotate` lists the top functions from it.
#
# Needs valgrind, curl (h2load from nghttp2-client for HTTP=2) and the release binaries
# (cargo build --release --workspace --bins).
# Knobs: N, WARMUP, BODY (0, 1k, 16k), HTTP (1 or 2: the client's protocol), BASE_PORT (19180),
# OUT_DIR, TOP (functions listed), STRACE, CARGO_TARGET_DIR. Only the processes it starts are stopped, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-2000}
WARMUP=${WARMUP:-300}
BODY=${BODY:-0}
HTTP=${HTTP:-1}
[[ "$HTTP" == 1 || "$HTTP" == 2 ]] || { echo "HTTP must be 1 or 2, not '$HTTP'" >&2; exit 2; }
TOP=${TOP:-30}
BASE_PORT=${BASE_PORT:-19180}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gateway-callgrind.XXXXXX")}
UP_PORT=$BASE_PORT
DP_PORT=$((BASE_PORT + 1))
DP_ADMIN=$((BASE_PORT + 2))
DP_TLS=$((BASE_PORT + 3))
CP_REST=$((BASE_PORT + 4))
CP_GRPC=$((BASE_PORT + 5))

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
tools=(valgrind callgrind_control callgrind_annotate curl)
[[ "$HTTP" == 2 ]] && tools+=(h2load)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install valgrind curl nghttp2-client)"
done
for b in gateway-controlplane gateway-dataplane bench-upstream bench-config; do
    [[ -x "$BIN/$b" ]] || die "missing $BIN/$b (cargo build --release --workspace --bins)"
done
for ((p = BASE_PORT; p <= BASE_PORT + 5; p++)); do
    ! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use (set BASE_PORT)"
done
mkdir -p "$OUT_DIR/logs"

STARTED=()
start() {  # start NAME cmd...  (sets LAST_PID)
    local name=$1; shift
    "$@" >"$OUT_DIR/logs/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
}
stop_all() {
    set +e
    local i pid n
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        pid=${STARTED[$i]}
        kill -TERM "$pid" 2>/dev/null
        for ((n = 0; n < 100; n++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    STARTED=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_http() {  # wait_http NAME URL [seconds]
    local i
    for ((i = 0; i < ${3:-60} * 10; i++)); do
        [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$2" 2>/dev/null) == 200 ]] && return 0
        sleep 0.1
    done
    tail -20 "$OUT_DIR/logs/$1.log" >&2 || true
    die "$1 did not answer 200 on $2"
}
path() { [[ "$BODY" == 0 ]] && echo / || echo "/$BODY"; }
# requests COUNT: COUNT sequential requests on one keep-alive connection.
requests() {
    if [[ "$HTTP" == 2 ]]; then
        # curl 7.88 cannot reuse an h2c connection for a URL glob; h2load sends one at a time.
        local answered
        answered=$(h2load -n "$1" -c 1 -m 1 "http://127.0.0.1:$DP_PORT$(path)" 2>&1 |
            awk '/^status codes:/ {print $3}')
        [[ "$answered" == "$1" ]] || die "h2load: ${answered:-0} of $1 requests answered 2xx"
        return 0
    fi
    curl -s --http1.1 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$DP_PORT$(path)?[1-$1]" |
        sort | uniq -c >"$OUT_DIR/statuses.txt"
    grep -qv ' 200$' "$OUT_DIR/statuses.txt" && die "non-200 answers: $(cat "$OUT_DIR/statuses.txt")"
    return 0
}

start upstream "$BIN/bench-upstream" "127.0.0.1:$UP_PORT"
wait_http upstream "http://127.0.0.1:$UP_PORT/"
"$BIN/bench-config" --routes 10 --upstreams 10 --target "127.0.0.1:$UP_PORT" --catch-all >"$OUT_DIR/config.json"
export RUST_LOG=${RUST_LOG:-warn}
start controlplane "$BIN/gateway-controlplane" --data-dir "$OUT_DIR/cp" \
    --rest-listen "127.0.0.1:$CP_REST" --grpc-listen "127.0.0.1:$CP_GRPC"
wait_http controlplane "http://127.0.0.1:$CP_REST/readyz"
curl -sS -f -m 60 -X POST -H 'content-type: application/json' --data-binary @"$OUT_DIR/config.json" \
    -o /dev/null "http://127.0.0.1:$CP_REST/v1/apply" || die "applying the config failed"

dataplane_args=(--listen "127.0.0.1:$DP_PORT" --tls-listen "127.0.0.1:$DP_TLS"
    --admin-listen "127.0.0.1:$DP_ADMIN" --control-plane "http://127.0.0.1:$CP_GRPC"
    --node-id callgrind --cache-dir "" --workers 1 --drain-delay 0s)

if [[ "${STRACE:-0}" == 1 ]] && command -v strace >/dev/null; then
    # System calls per request, without valgrind in the way.
    start dataplane-strace strace -c -f -o "$OUT_DIR/strace.txt" "$BIN/gateway-dataplane" "${dataplane_args[@]}"
    STRACE_PID=$LAST_PID
    wait_http dataplane-strace "http://127.0.0.1:$DP_PORT$(path)"
    requests "$N"
    kill -TERM "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null || true
    STARTED=("${STARTED[@]/$STRACE_PID}")
    calls=$(awk '$NF == "total" {print $(NF-2)}' "$OUT_DIR/strace.txt")
    log "strace: $calls system calls in the whole run (start-up included), $N requests"
    SYSCALLS=$(awk -v c="$calls" -v n="$N" 'BEGIN{printf "%.2f", c / n}')
fi

start dataplane valgrind --tool=callgrind --callgrind-out-file="$OUT_DIR/callgrind.out.%p" \
    "$BIN/gateway-dataplane" "${dataplane_args[@]}"
DP_PID=$LAST_PID
wait_http dataplane "http://127.0.0.1:$DP_PORT$(path)" 300
log "warming up: $WARMUP requests"
requests "$WARMUP"
callgrind_control -z "$DP_PID" >/dev/null
log "measuring: $N requests"
requests "$N"
callgrind_control -d "$DP_PID" >/dev/null
dump=$(ls -t "$OUT_DIR"/callgrind.out."$DP_PID".* 2>/dev/null | head -1)
[[ -n "$dump" ]] || die "no callgrind dump in $OUT_DIR"
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
per=$(awk -v ir="$ir" -v n="$N" 'BEGIN{printf "%.0f", ir / n}')
# Self cost per function, highest first (the first lines are the threads' roots, inclusive).
{ callgrind_annotate --threshold=100 "$dump" 2>/dev/null || true; } |
    awk '/file:function/ {on = 1; next} on && /^-- / {exit} on && NF' | head -"$TOP" >"$OUT_DIR/top.txt" || true
{
    echo "commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo n/a)"
    echo "body: $BODY, HTTP/$HTTP, requests: $N (after $WARMUP of warm-up), one keep-alive connection, --workers 1"
    echo "instructions: $ir in all, $per per request"
    [[ -n "${SYSCALLS:-}" ]] && echo "system calls per request (strace -c -f, start-up included): $SYSCALLS"
    echo "dump: $dump"
} | tee "$OUT_DIR/summary.txt"
cat "$OUT_DIR/top.txt"
