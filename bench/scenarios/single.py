"""Scenario 1: `POST /metrics` with one event a request, through the whole pipeline."""

from __future__ import annotations

from router.flow import FlowSigner

from ..results import ScenarioResult
from ..traffic import FLOW_KEY, HEADERS, body_bytes
from . import TITLES, scenario_main
from ._http import records_for, run_http


def run(duration: float, smoke: bool) -> ScenarioResult:
    # The flow began a minute ago and expires after two hours: no refresh is needed.
    data = body_bytes(FlowSigner(FLOW_KEY), 1)
    return run_http(
        "single",
        TITLES["single"],
        method="POST",
        path="/metrics",
        body=data,
        events_per_request=1,
        records_per_request=records_for(data),
        duration=duration,
        smoke=smoke,
        headers=HEADERS,
    )


if __name__ == "__main__":
    scenario_main(run)
