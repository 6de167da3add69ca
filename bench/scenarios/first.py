"""Scenario 10: the first requests after start, against the hundredth.

Each round starts a fresh router, waits for "listening on", then times (wall clock, one
connection) the first `POST /metrics`, the first `GET /metrics-flow` and then a hundred more of
each. Anything built lazily on the request path (a parser, a cache, an encoder) shows up as a
first request slower than the hundredth.
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import time
from pathlib import Path

from router.enrich.flow import FlowSigner

from ..procs import free_port, placement, router_server
from ..results import Figures, ScenarioResult
from ..traffic import FLOW_KEY, FLOW_QUERY, HEADERS, body_bytes
from . import TITLES, scenario_main
from ._http import router_config

ROUNDS = 3
REPEATS = 100


def timed(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> float:
    """One request's wall time in ms; the answer must be 2xx."""
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=HEADERS if body is not None else {})
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status}")
    return elapsed


def one_round(directory: Path, cpu: int | None, body: bytes) -> dict[str, list[float]]:
    port = free_port()
    config = router_config(directory, directory / "router.log")
    out: dict[str, list[float]] = {"post": [], "flow": []}
    with router_server(config, port, cpu):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(REPEATS + 1):
            out["post"].append(timed(conn, "POST", "/metrics", body))
            out["flow"].append(timed(conn, "GET", "/metrics-flow?" + FLOW_QUERY, None))
        conn.close()
    return out


def run(duration: float, smoke: bool) -> ScenarioResult:
    del duration  # a fixed number of requests, not a duration
    cpu, _ = placement()
    body = body_bytes(FlowSigner(FLOW_KEY), 1)
    rounds = 1 if smoke else ROUNDS
    firsts: dict[str, list[float]] = {"post": [], "flow": []}
    laters: dict[str, list[float]] = {"post": [], "flow": []}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for i in range(rounds):
            directory = Path(tmp) / str(i)
            directory.mkdir()
            times = one_round(directory, cpu, body)
            for key, values in times.items():
                firsts[key].append(values[0])
                laters[key].append(statistics.median(values[1:]))
    result = ScenarioResult(scenario="first", title=TITLES["first"])
    names = {"post": "POST /metrics", "flow": "GET /metrics-flow"}
    for key, name in names.items():
        result.rows.append(
            Figures(
                label=f"{name}: first request",
                p50_ms=round(statistics.median(firsts[key]), 3),
                max_ms=round(max(firsts[key]), 3),
            )
        )
        result.rows.append(
            Figures(
                label=f"{name}: median of the next {REPEATS}",
                p50_ms=round(statistics.median(laters[key]), 3),
                max_ms=round(max(laters[key]), 3),
            )
        )
    result.notes.append(
        f"{rounds} fresh router(s), one keep-alive connection, wall clock; p50 = median over"
        " the rounds, max = the slowest round"
    )
    return result


if __name__ == "__main__":
    scenario_main(run)
