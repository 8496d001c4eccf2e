#!/usr/bin/env bash
# Builds and runs the gateway on this machine: a control plane on the embedded store (SQLite in
# .gateway/, so the config survives restarts) and one data plane. Ctrl-C stops both.
# Ports are the defaults of the interface contract; override with the GATEWAY_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."

state_dir=${GATEWAY_STATE_DIR:-.gateway}
rest=${GATEWAY_REST_LISTEN:-127.0.0.1:9080}
grpc=${GATEWAY_GRPC_LISTEN:-127.0.0.1:9090}
listen=${GATEWAY_LISTEN:-127.0.0.1:8080}
admin=${GATEWAY_ADMIN_LISTEN:-127.0.0.1:8081}

echo "building (first build takes a few minutes)…"
cargo build --quiet --bins
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug

pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  echo "stopped."
}
trap stop INT TERM EXIT

mkdir -p "$state_dir"
"$bin/gateway-controlplane" --data-dir "$state_dir/controlplane" \
  --rest-listen "$rest" --grpc-listen "$grpc" >>"$state_dir/controlplane.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if curl -fsS "http://$rest/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the control plane did not start; see $state_dir/controlplane.log:" >&2
    tail -n 5 "$state_dir/controlplane.log" >&2
    exit 1
  fi
  sleep 0.1
done

"$bin/gateway-dataplane" --control-plane "http://$grpc" --listen "$listen" --admin-listen "$admin" \
  --node-id local --cache-dir "$state_dir/dataplane-cache" >>"$state_dir/dataplane.log" 2>&1 &
pids+=($!)

cat <<MSG

gateway running — logs in $state_dir/*.log, config kept in $state_dir/controlplane/
  send traffic to   http://$listen/
  REST admin API    http://$rest/v1/   (gRPC admin on $grpc)
  data plane admin  http://$admin/config

next, in another terminal:
  python3 -m http.server 9001 &            # any local HTTP server as an upstream
  $bin/gatewayctl upstream create web --target 127.0.0.1:9001
  $bin/gatewayctl route create web-root --path-prefix / --upstream web
  curl -i http://$listen/
  $bin/gatewayctl status

Ctrl-C stops both.
MSG
wait -n "${pids[@]}"
