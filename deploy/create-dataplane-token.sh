#!/usr/bin/env bash
# Mints the data planes' token (role dataplane) through the control plane's REST API and stores
# it as Secret gateway-dataplane-token, which the data-plane pods wait for.
#
#   deploy/create-dataplane-token.sh [NAMESPACE] [TOKEN_NAME]     (defaults: gateway-dev, dataplanes)
#
# Authenticates with the bootstrap token of the control plane's own Secret, through a temporary
# `kubectl port-forward`. No token ever appears on a command line. Needs kubectl, curl, python3.
# Does nothing when the Secret already exists (to rotate: mint a new token under another name,
# replace the Secret, restart the data planes, then revoke the old token).
set -euo pipefail

ns=${1:-gateway-dev}
token_name=${2:-dataplanes}
port=${LOCAL_PORT:-19080}

if kubectl -n "$ns" get secret gateway-dataplane-token >/dev/null 2>&1; then
    echo "secret $ns/gateway-dataplane-token exists; nothing to do"
    exit 0
fi

kubectl -n "$ns" rollout status deployment/gateway-controlplane --timeout=180s

# The bootstrap Secret's name carries a hash suffix when kustomize generated it: ask the
# Deployment which one it mounts.
bootstrap_secret=$(kubectl -n "$ns" get deployment gateway-controlplane -o \
    jsonpath='{.spec.template.spec.volumes[?(@.name=="bootstrap-token")].secret.secretName}')
if [ -z "$bootstrap_secret" ]; then
    echo "deployment $ns/gateway-controlplane mounts no bootstrap-token volume" >&2
    exit 1
fi

workdir=$(mktemp -d)
forward_pid=
cleanup() {
    if [ -n "$forward_pid" ]; then
        kill "$forward_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
umask 077

kubectl -n "$ns" get secret "$bootstrap_secret" -o jsonpath='{.data.token}' \
    | python3 -c 'import base64, sys; print("Authorization: Bearer " + base64.b64decode(sys.stdin.read()).decode().strip())' \
    >"$workdir/auth-header"

kubectl -n "$ns" port-forward service/gateway-controlplane "$port:9080" >"$workdir/port-forward.log" 2>&1 &
forward_pid=$!
for _ in $(seq 50); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$forward_pid" 2>/dev/null; then
        echo "kubectl port-forward failed:" >&2
        cat "$workdir/port-forward.log" >&2
        exit 1
    fi
    sleep 0.2
done

# -H @file: the header (and so the token) stays off the command line.
status=$(curl -sS -o "$workdir/response.json" -w '%{http_code}' -X POST \
    -H @"$workdir/auth-header" -H 'content-type: application/json' \
    --data "{\"name\": \"$token_name\", \"role\": \"dataplane\"}" \
    "http://127.0.0.1:$port/v1/tokens")
if [ "$status" != 201 ]; then
    echo "creating token $token_name failed with HTTP $status:" >&2
    cat "$workdir/response.json" >&2
    exit 1
fi
python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1]))["secret"])' \
    "$workdir/response.json" >"$workdir/token"

kubectl -n "$ns" create secret generic gateway-dataplane-token --from-file=token="$workdir/token"
echo "token $token_name (role dataplane) stored in secret $ns/gateway-dataplane-token"
