"""Scenario 9: what the spool costs. No spool, default (write-behind) and strict modes.

The figures come from `bench.spool_cost`: a router child process with one healthy durable
sink, 32 connections posting 10-event batches from an aiohttp client on the same machine.
"""

from __future__ import annotations

from ..results import Figures, ScenarioResult
from . import TITLES, scenario_main


def run(duration: float, smoke: bool) -> ScenarioResult:
    from .. import spool_cost

    result = ScenarioResult(scenario="spool", title=TITLES["spool"])
    figures = spool_cost.run(duration)
    for mode, values in figures.items():
        result.rows.append(
            Figures(
                label=mode,
                seconds=duration,
                requests_per_s=float(values["requests_per_s"]),
                events_per_s=float(values["events_per_s"]),
            )
        )
    first = next(iter(figures.values()), None)
    if first:
        for mode, values in figures.items():
            share = values["requests_per_s"] / first["requests_per_s"]
            result.notes.append(f"{mode}: {share:.0%} of the first mode's requests/s")
    return result


if __name__ == "__main__":
    scenario_main(run)
