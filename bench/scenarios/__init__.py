"""Bench scenarios: each module has `run(duration, smoke) -> ScenarioResult`.

The runner starts every scenario in its own process (`python -m bench.scenarios.NAME`),
which prints its result as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import msgspec

from ..results import ScenarioResult

# (name, title), in the order they run.
SCENARIOS: list[tuple[str, str]] = [
    ("single", "1. POST /metrics, 1 event a request, full pipeline"),
    ("batch", "2. POST /metrics, 50 FxA events a request"),
    ("flow", "3. GET /metrics-flow"),
    ("pipeline", "4. in-process pipeline, bytes in to records out"),
    ("rules", "5. rule-table scaling: 10, 100, 1000 fuzzy rules"),
    ("sinks", "6. sink throughput"),
    ("load", "7. mixed load (whole flows) against a local router"),
    ("scale", "8. scale-out: 2 workers vs 1, JetStream publish and forward"),
    ("spool", "9. the spool's cost: no spool, default and strict modes"),
    ("first", "10. the first requests after start vs the hundredth"),
    ("soak", "11. peak RSS after ten million events"),
]
TITLES = dict(SCENARIOS)
RESULT_MARK = "BENCH-RESULT "


def scenario_main(run: Callable[[float, bool], ScenarioResult]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    result = run(args.duration, args.smoke)
    sys.stdout.write(RESULT_MARK + msgspec.json.encode(result).decode() + "\n")
