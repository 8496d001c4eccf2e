#!/usr/bin/env python3
"""Sends every Severe and Ambiguous request of http_desync_guardian's corpus to a data plane.

    corpus.py CORPUS_DIR PROXY_PORT UPSTREAM_LOG

CORPUS_DIR is the crate's tests/ directory (parsed where it lies, never copied: the corpus is
Apache-2.0, (c) Amazon.com, Inc. or its affiliates). Each case goes on a fresh TCP connection as
its head, then `0\\r\\n\\r\\n` (a body a chunked reader ends on and a length reader sees as data),
then a second, harmless request on the same connection; the tag of each case is its header
`x-case`. A case is *rejected* when the gateway answered 4xx, sent nothing for the second request
and the upstream never saw the case. Prints one line per case that was not, then the counts;
exits 1 if any Severe case was not rejected.
"""

import socket
import sys
import time
from pathlib import Path

import yaml


def raw(case, index):
    head = f'{case["method"]} {case["uri"]} {case["version"]}\r\nHost: smuggling.test\r\nx-case: {index}\r\n'
    for header in case["headers"]:
        head += f'{header["name"]}: {header["value"]}\r\n'
    follow = f"GET /second HTTP/1.1\r\nHost: smuggling.test\r\nx-case: {index}-second\r\n\r\n"
    return (head + "\r\n" + "0\r\n\r\n" + follow).encode("latin-1", "replace")


def exchange(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.sendall(data)
        got = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    return got


def main():
    corpus, port, upstream_log = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    cases = []
    for path in sorted(corpus.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text()) or []:
            tier = case["expected"]["tier"]
            if tier in ("Severe", "Ambiguous"):
                cases.append((tier, path.name, case))
    outcomes = []
    for index, (tier, file, case) in enumerate(cases):
        reply = exchange(port, raw(case, index))
        statuses = [line.split()[1] for line in reply.split(b"\r\n") if line.startswith(b"HTTP/1.")]
        outcomes.append((index, tier, file, case["name"], statuses))
    time.sleep(0.5)
    seen = upstream_log.read_text().split() if upstream_log.exists() else []
    failed_severe = 0
    counts = {}
    for index, tier, file, name, statuses in outcomes:
        forwarded = str(index) in seen
        rejected = (
            len(statuses) == 1 and statuses[0].startswith(b"4") and not forwarded
        )
        total, ok = counts.get(tier, (0, 0))
        counts[tier] = (total + 1, ok + rejected)
        if not rejected:
            failed_severe += tier == "Severe"
            answers = b",".join(statuses).decode() or "none"
            print(f"not rejected: {tier} {file}: {name!r}: answers {answers}, upstream saw it: {forwarded}")
    for tier, (total, ok) in sorted(counts.items()):
        print(f"{tier}: {ok} of {total} rejected (4xx, connection closed, never forwarded)")
    return 1 if failed_severe else 0


if __name__ == "__main__":
    sys.exit(main())
