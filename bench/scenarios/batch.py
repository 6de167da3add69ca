"""Scenario 2: `POST /metrics` with 50 realistic FxA events a request."""

from __future__ import annotations

from router.enrich.flow import FlowSigner

from ..results import ScenarioResult
from ..traffic import FLOW_KEY, HEADERS, body_bytes
from . import TITLES, scenario_main
from ._http import records_for, run_http

EVENTS = 50


def run(duration: float, smoke: bool) -> ScenarioResult:
    # The flow began a minute ago and expires after two hours: no refresh is needed.
    data = body_bytes(FlowSigner(FLOW_KEY), EVENTS)
    return run_http(
        "batch",
        TITLES["batch"],
        method="POST",
        path="/metrics",
        body=data,
        events_per_request=EVENTS,
        records_per_request=records_for(data),
        duration=duration,
        smoke=smoke,
        headers=HEADERS,
    )


if __name__ == "__main__":
    scenario_main(run)
