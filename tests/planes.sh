# Sourced by the scripts under tests/ that need a running gateway (tests/tls/sslyze.sh,
# tests/smuggling/run.sh): binaries ($BIN, else `cargo build --bins`), spare ports, a temp dir
# ($work, removed on exit, with every started process stopped), and helpers to start the planes.

if [ -z "${BIN:-}" ]; then
    cargo build --quiet --bins
    BIN=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REST=$(free_port); GRPC=$(free_port); HTTP=$(free_port); ADMIN=$(free_port); TLS=$(free_port)
work=$(mktemp -d)
pids=()
stop() {
    if [ ${#pids[@]} -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT

wait_for() { # url, pid, log
    for _ in $(seq 200); do
        if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "process exited; log:" >&2; tail -n 20 "$3" >&2; exit 1; }
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2; tail -n 20 "$3" >&2; exit 1
}

ctl() { "$BIN/gatewayctl" --server "http://127.0.0.1:$GRPC" "$@" >/dev/null; }

start_controlplane() { # embedded store in $work/cp
    "$BIN/gateway-controlplane" --data-dir "$work/cp" --rest-listen "127.0.0.1:$REST" \
        --grpc-listen "127.0.0.1:$GRPC" >"$work/cp.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$REST/readyz" "$!" "$work/cp.log"
}

start_dataplane() { # node id; returns once it is ready (a config applied)
    "$BIN/gateway-dataplane" --control-plane "http://127.0.0.1:$GRPC" --listen "127.0.0.1:$HTTP" \
        --tls-listen "127.0.0.1:$TLS" --admin-listen "127.0.0.1:$ADMIN" --node-id "$1" \
        --cache-dir "$work/cache" >"$work/dp.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$ADMIN/readyz" "$!" "$work/dp.log"
}
