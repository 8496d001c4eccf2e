#!/usr/bin/env bash
# Fuzzes the REST admin API from its own OpenAPI document with schemathesis: starts a control
# plane on a fresh embedded store (or on Postgres with --database-url URL), runs every operation
# with generated valid and invalid inputs as admin, and exits non-zero when any answer is a 5xx
# or does not match the document (status code, content type, headers, body schema).
#
#   tests/fuzz/schemathesis.sh [--max-examples N] [--database-url URL] [-- extra schemathesis args]
#
# Needs `cargo build -p gateway-controlplane` first (uses target/debug, or $GATEWAY_BIN_DIR).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=${GATEWAY_BIN_DIR:-$root/target/debug}
max_examples=50
database_url=
extra=()
while (($#)); do
    case $1 in
        --max-examples) max_examples=$2; shift 2 ;;
        --database-url) database_url=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "schemathesis.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done

# Run as a module: a fresh pip install may put the `schemathesis` script outside PATH.
if ! python3 -m schemathesis.cli --version >/dev/null 2>&1; then
    echo "schemathesis.sh: installing schemathesis (pip)" >&2
    python3 -m pip install --quiet 'schemathesis>=4,<5'
fi
if [[ ! -x $bin_dir/gateway-controlplane ]]; then
    echo "schemathesis.sh: $bin_dir/gateway-controlplane is missing: run cargo build -p gateway-controlplane" >&2
    exit 2
fi

work=$(mktemp -d)
cp_pid=
cleanup() {
    [[ -n $cp_pid ]] && kill "$cp_pid" 2>/dev/null && wait "$cp_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Port 0 is not reported back, so pick free ports the way the e2e harness does: ask the kernel.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rest_port=$(free_port)
grpc_port=$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

store=(--data-dir "$work/store")
[[ -n $database_url ]] && store=(--database-url "$database_url")
GATEWAY_BOOTSTRAP_TOKEN=$token "$bin_dir/gateway-controlplane" "${store[@]}" \
    --rest-listen "127.0.0.1:$rest_port" --grpc-listen "127.0.0.1:$grpc_port" \
    >"$work/controlplane.log" 2>&1 &
cp_pid=$!
base=http://127.0.0.1:$rest_port
for _ in $(seq 100); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    kill -0 "$cp_pid" 2>/dev/null || { cat "$work/controlplane.log" >&2; exit 1; }
    sleep 0.1
done

status=0
# From the temp directory, so schemathesis leaves nothing (.schemathesis/) in the checkout.
cd "$work"
python3 -m schemathesis.cli run "$base/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$max_examples" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --suppress-health-check all \
    --no-color --generation-database none \
    "${extra[@]}" || status=$?
if grep -q 'panicked' "$work/controlplane.log"; then
    echo "schemathesis.sh: the control plane panicked:" >&2
    grep -A5 'panicked' "$work/controlplane.log" >&2
    status=1
fi
exit "$status"
