"""Scenario 8: scale-out. 2 router workers against 1, JetStream publish and forward.

The figures come from `bench.scale` (HTTP load from wrk on the same two cores: there is
no spare core to pin to, so the ratio is what a 2-core machine really gives).
"""

from __future__ import annotations

from ..results import Figures, ScenarioResult
from . import TITLES, scenario_main


def run(duration: float, smoke: bool) -> ScenarioResult:
    from .. import scale

    result = ScenarioResult(scenario="scale", title=TITLES["scale"])
    workers = {n: scale.run_workers(duration, n) for n in (1, 2)}
    for n, figures in workers.items():
        result.rows.append(
            Figures(
                label=f"{n} worker{'s' if n > 1 else ''}",
                seconds=duration,
                requests_per_s=figures[f"workers{n}.requests_per_s"],
            )
        )
    ratio = workers[2]["workers2.requests_per_s"] / workers[1]["workers1.requests_per_s"]
    result.notes.append(f"2 workers / 1 worker: x{ratio:.2f} (wrk shares the 2 cores)")
    jetstream = scale.run_jetstream(duration)
    for key, label in (
        ("jetstream.publish_events_per_s", "JetStream publish (jetstream sink)"),
        ("jetstream.forward_events_per_s", "JetStream forward (forwarder)"),
    ):
        if key in jetstream:
            result.rows.append(Figures(label=label, seconds=duration, events_per_s=jetstream[key]))
    return result


if __name__ == "__main__":
    scenario_main(run)
