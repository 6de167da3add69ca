"""Scenario 3: `GET /metrics-flow` (a signed flow id, flow.begin and form_type records)."""

from __future__ import annotations

from router.enrich.flow import FlowSigner

from ..results import ScenarioResult
from ..traffic import FLOW_QUERY, USER_AGENT
from . import TITLES, scenario_main
from ._http import run_http


def _records(signer: FlowSigner) -> int:
    # flow.begin and the email form's screen view: one flow record each, one Amplitude
    # event for the screen view (flow.begin maps to nothing).
    return 3


def run(duration: float, smoke: bool) -> ScenarioResult:
    return run_http(
        "flow",
        TITLES["flow"],
        method="GET",
        path=f"/metrics-flow?{FLOW_QUERY}",
        body=None,
        events_per_request=1,
        records_per_request=_records,
        duration=duration,
        smoke=smoke,
        headers={"User-Agent": USER_AGENT, "Accept-Language": "en-US"},
    )


if __name__ == "__main__":
    scenario_main(run)
