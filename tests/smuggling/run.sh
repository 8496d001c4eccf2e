#!/usr/bin/env bash
# Runs http_desync_guardian's request-smuggling corpus against a real data plane (see corpus.py).
# Starts a control plane (embedded store, temp dir), a data plane and a logging upstream on spare
# ports, routes everything to the upstream, then sends the corpus. Needs python3 with PyYAML and
# the crate's source: `cargo fetch` it from a scratch project (`cargo add http_desync_guardian`),
# or point HDG_TESTS at its tests/ directory. Binaries from `cargo build --bins` (or $BIN).
set -euo pipefail
cd "$(dirname "$0")/../.."

corpus=${HDG_TESTS:-$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/http_desync_guardian-*/tests 2>/dev/null | tail -n 1)}
[ -d "$corpus" ] || { echo "http_desync_guardian's tests/ not found; set HDG_TESTS" >&2; exit 2; }
. tests/planes.sh
UP=$(free_port)

# The upstream appends the x-case header of every request it sees to upstream.log.
cat >"$work/upstream.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[2], "a", buffering=1)
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_any(self):
        log.write(f"{self.headers.get('x-case', '-')}\n")
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_any
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
python3 "$work/upstream.py" "$UP" "$work/upstream.log" 2>"$work/upstream.err" &
pids+=($!)

start_controlplane
ctl upstream create up --target "127.0.0.1:$UP"
ctl route create all --path-prefix / --upstream up

start_dataplane smuggling
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$HTTP/ready-check" >/dev/null 2>&1 && break
    sleep 0.1
done

python3 tests/smuggling/corpus.py "$corpus" "$HTTP" "$work/upstream.log"
