"""Scenario 11: peak RSS after ten million events (50-event batches, log sink to a file).

wrk runs in rounds of `duration` seconds until ten million events have been answered 2xx (or a
time cap passes); the router's high-water RSS (VmHWM) is read at the end, and the log sink's
lines are counted after a clean stop.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from router.enrich.flow import FlowSigner

from .. import wrk
from ..procs import count_lines, free_port, peak_rss_mb, placement, router_server
from ..results import Figures, ScenarioResult
from ..traffic import FLOW_KEY, HEADERS, body_bytes
from . import TITLES, scenario_main
from ._http import CONNECTIONS, answered_2xx, records_for, router_config

EVENTS = 50
WANTED = 10_000_000
CAP_S = 400.0


def run(duration: float, smoke: bool) -> ScenarioResult:
    reason = wrk.available()
    if reason is not None:
        return ScenarioResult(scenario="soak", title=TITLES["soak"], skipped=reason)
    server_cpu, wrk_cpu = placement()
    data = body_bytes(FlowSigner(FLOW_KEY), EVENTS)
    per_request = records_for(data)(FlowSigner(FLOW_KEY))
    wanted = EVENTS * 1000 if smoke else WANTED
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        directory = Path(tmp)
        body_file = directory / "body.json"
        body_file.write_bytes(data)
        script = wrk.write_script(directory / "script.lua", "POST", body_file, HEADERS)
        log_path = directory / "router.log"
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        server = router_server(router_config(directory, log_path), port, server_cpu)
        accepted = refused = 0
        started = time.monotonic()
        with server:
            while accepted * EVENTS < wanted and time.monotonic() - started < CAP_S:
                result = wrk.run(url, script, max(duration, 1.0), wrk_cpu, CONNECTIONS)
                accepted += result.requests - result.status_errors
                refused += result.errors
            rss = peak_rss_mb(server.pid)
            # wrk does not count the requests in flight when each run stops: the router does.
            answered = answered_2xx(port, "/metrics")
        seconds = time.monotonic() - started
        code = server.stop()
        written = count_lines(log_path) if log_path.exists() else 0
    accepted = answered or accepted
    events = accepted * EVENTS
    return ScenarioResult(
        scenario="soak",
        title=TITLES["soak"],
        rows=[
            Figures(
                label="router, 50-event batches",
                seconds=round(seconds, 1),
                events_per_s=round(events / seconds, 1),
                peak_rss_mb=round(rss, 1),
                events=events,
                errors=refused,
            )
        ],
        notes=[
            f"{events:,} events answered 2xx in {seconds:.0f} s, {refused:,} requests not 2xx;"
            f" log sink wrote {written:,} of {accepted * per_request:,} records (exit {code})"
        ],
    )


if __name__ == "__main__":
    scenario_main(run)
