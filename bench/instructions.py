"""Instructions a request, counted by callgrind: a figure that does not move with the host.

`python -m bench.instructions` runs bare aiohttp, the decode floor and the router (as the
HTTP scenarios configure it) under `valgrind --tool=callgrind` one after another, sends
each the same requests over keep-alive connections from this process, and prints the
user-space instructions each spent a request, with the router's as a ratio of bare's. Only
the measured requests are counted: instrumentation is switched on after a warm-up and off
before the server stops (`callgrind_control -i`). The count repeats to within 0.1% from run
to run whatever else the machine does; it leaves out the kernel's share (the same for every
server) and says nothing of instructions per cycle, so its ratio is not the time ratio
`python -m bench` measures (docs/bench.md). Needs
valgrind (Debian's `valgrind`); a run of the defaults takes about two minutes.

    python -m bench.instructions                      # both endpoints, 2,000 requests each
    python -m bench.instructions --only single --requests 4000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from router.enrich.flow import FlowSigner

from .procs import free_port
from .scenarios._http import router_config
from .traffic import FLOW_KEY, FLOW_QUERY, HEADERS, USER_AGENT, body_bytes

CONNECTIONS = 8
WARMUP = 400
BATCH = 50  # events a request of the `batch` scenario, as the bench's scenario 2
SCENARIOS = ("single", "batch", "flow")


def request_bytes(scenario: str) -> bytes:
    """One request of `scenario`: `single` (a 1-event POST), `batch` (50 events) or `flow`."""
    if scenario == "flow":
        head = (
            f"GET /metrics-flow?{FLOW_QUERY} HTTP/1.1\r\nHost: bench\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept-Language: en-US\r\n\r\n"
        )
        return head.encode()
    data = body_bytes(FlowSigner(FLOW_KEY), BATCH if scenario == "batch" else 1)
    lines = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    head = f"POST /metrics HTTP/1.1\r\nHost: bench\r\n{lines}Content-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def send(port: int, request: bytes, count: int) -> int:
    """`count` requests over CONNECTIONS connections, one at a time each; the non-2xx."""
    failed = [0]

    def one_connection(n: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as f:
            for _ in range(n):
                sock.sendall(request)
                if not f.readline().split(b" ")[1].startswith(b"2"):
                    failed[0] += 1
                length = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                f.read(length)

    threads = [
        threading.Thread(target=one_connection, args=(count // CONNECTIONS,))
        for _ in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed[0]


def count(
    argv: list[str], port: int, request: bytes, requests: int, directory: Path, out: Path
) -> float:
    """Instructions a request of the server `argv` (listening on `port`); its profile in `out`."""
    log = (directory / "server.log").open("wb")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        + argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        # As the HTTP scenarios start it: the router's settings from its config file only.
        env={k: v for k, v in os.environ.items() if not k.startswith("METRICS_ROUTER_")},
    )
    try:
        deadline = time.monotonic() + 300
        while True:  # ready once it accepts connections (valgrind starts slowly)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[2]} did not start: see {directory}") from None
                time.sleep(0.2)
        send(port, request, WARMUP)
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(server.pid)], check=True, capture_output=True)
        failed = send(port, request, requests)
        subprocess.run([*control, "off", str(server.pid)], check=True, capture_output=True)
    finally:
        server.terminate()
        server.wait(timeout=300)
        log.close()
    if failed:
        raise RuntimeError(f"{failed} requests not answered 2xx by {argv[2:]}")
    match = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    assert match is not None, out
    return int(match.group(1)) / (requests // CONNECTIONS * CONNECTIONS)


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--only", choices=SCENARIOS, action="append")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--keep",
        metavar="DIR",
        type=Path,
        help="keep each server's callgrind profile in DIR (for callgrind_annotate)",
    )
    options = parser.parse_args(args)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    python = sys.executable
    for scenario in options.only or ["single", "flow"]:  # batch on request: it takes longer
        request = request_bytes(scenario)
        figures: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
            directory = Path(tmp)
            for label in ("bare aiohttp", "aiohttp + msgspec decode", "router"):
                port = free_port()
                if label == "router":
                    config = router_config(directory, directory / "router.log")
                    argv = [python, "-m", "router", "serve", "--config", str(config)]
                    argv += ["--port", str(port)]
                else:
                    mode = "bare" if label.startswith("bare") else "decode"
                    argv = [python, "-m", "bench.baseline", "--port", str(port), "--mode", mode]
                short = {"bare aiohttp": "bare", "router": "router"}.get(label, "decode")
                name = f"{scenario}-{short}.callgrind"
                out = (options.keep or directory) / name
                if options.keep is not None:
                    options.keep.mkdir(parents=True, exist_ok=True)
                figures[label] = count(argv, port, request, options.requests, directory, out)
        bare = figures["bare aiohttp"]
        for label, value in figures.items():
            ratio = bare / value
            count_text = f"{value:10,.0f} instructions a request"
            if scenario == "batch":
                count_text += f" ({value / BATCH:8,.0f} an event)"
            print(f"{scenario:6}  {label:26} {count_text}  {ratio:5.2f}x bare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
