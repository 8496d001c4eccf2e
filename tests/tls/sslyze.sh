#!/usr/bin/env bash
# Scans the data plane's TLS listener with sslyze against the Mozilla "intermediate" profile.
# Starts its own control plane (embedded store, temp dir) and data plane on spare ports, creates an
# ECDSA P-256 certificate for localhost signed by a throwaway CA, then runs
#   sslyze --mozilla_config=intermediate --certinfo_ca_file CA localhost:PORT
# and exits with sslyze's status (0: compliant). Needs openssl, curl and sslyze
# (`pip install sslyze`). Binaries from `cargo build --bins` (or $BIN).
#
#   tests/tls/sslyze.sh            # builds, scans, prints sslyze's report
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v sslyze >/dev/null || { echo "sslyze not found: pip install sslyze" >&2; exit 2; }
. tests/planes.sh

start_controlplane

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
ctl certificate create site --cert "$work/site.pem" --key "$work/site.key" --sni localhost \
    --label default=true

start_dataplane sslyze

sslyze --mozilla_config=intermediate --certinfo_ca_file "$work/ca.pem" "localhost:$TLS{127.0.0.1}"
