"""`python -m router.healthcheck [PATH [PORT]]`: the container health probe.

Exit 0 when `http://127.0.0.1:PORT/PATH` (default `/__lbheartbeat__`) answers 200. Without
PORT, the router's port and a forwarder's Dockerflow port are both tried (from
METRICS_ROUTER_SERVER_PORT / METRICS_ROUTER_FORWARD_PORT, else their defaults), so one
image-wide HEALTHCHECK fits `serve` and `forward` alike. Standard library only: it runs
every few seconds and must start fast.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

TIMEOUT = 2.0


def ports() -> list[str]:
    return [
        os.environ.get("METRICS_ROUTER_SERVER_PORT", "8080"),
        os.environ.get("METRICS_ROUTER_FORWARD_PORT", "8081"),
    ]


def probe(path: str, port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: Sequence[str]) -> int:
    path = argv[0] if argv else "/__lbheartbeat__"
    candidates = [argv[1]] if len(argv) > 1 else ports()
    for port in candidates:
        if probe(path, port):
            return 0
    print(f"unhealthy: no 200 from {path} on port {' or '.join(candidates)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
