#!/usr/bin/env bash
# Scans the data plane's TLS listener with sslyze against the Mozilla "intermediate" profile.
# Starts its own control plane (embedded store, temp dir) and data plane on spare ports, creates a
# self-signed ECDSA P-256 certificate for localhost, then runs
#   sslyze --mozilla_config=intermediate 127.0.0.1:PORT
# and exits with sslyze's status (0: compliant). Needs openssl, curl and sslyze
# (`pip install sslyze`). Binaries from `cargo build --bins` (or $BIN).
#
#   tests/tls/sslyze.sh            # builds, scans, prints sslyze's report
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v sslyze >/dev/null || { echo "sslyze not found: pip install sslyze" >&2; exit 2; }
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

"$BIN/gateway-controlplane" --data-dir "$work/cp" --rest-listen "127.0.0.1:$REST" \
    --grpc-listen "127.0.0.1:$GRPC" >"$work/cp.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$REST/readyz" "${pids[0]}" "$work/cp.log"

# A throwaway CA signs the leaf, and sslyze trusts that CA (--certinfo_ca_file): the profile's
# path-validation check then judges the chain the gateway serves, not whether the test CA is public.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=gateway sslyze test CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$work/site.key" -out "$work/site.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$work/leaf.ext"
openssl x509 -req -in "$work/site.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$work/leaf.ext" -out "$work/site.pem" 2>/dev/null
"$BIN/gatewayctl" --server "http://127.0.0.1:$GRPC" certificate create site \
    --cert "$work/site.pem" --key "$work/site.key" --sni localhost --label default=true >/dev/null

"$BIN/gateway-dataplane" --control-plane "http://127.0.0.1:$GRPC" --listen "127.0.0.1:$HTTP" \
    --tls-listen "127.0.0.1:$TLS" --admin-listen "127.0.0.1:$ADMIN" --node-id sslyze \
    --cache-dir "$work/cache" >"$work/dp.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$ADMIN/readyz" "${pids[1]}" "$work/dp.log"

sslyze --mozilla_config=intermediate --certinfo_ca_file "$work/ca.pem" "localhost:$TLS{127.0.0.1}"
