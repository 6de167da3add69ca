"""Scenario 5: the same traffic against 10, 100 and 1000 fuzzy rules.

The traffic matches only the last ten rules, so with more rules every cache miss scans
more regexes first. Two figures per size: the pipeline's events/s in steady state (the
rule table caches every name it has seen) and uncached lookups/s (the cache cleared
before every pass), the regex scan's own cost.
"""

from __future__ import annotations

import os
import time
import tomllib
from typing import Any

from router.ruletable import RuleTable, compile_rules_from_dict, default_rules_path

from ..results import Figures, ScenarioResult
from . import TITLES, scenario_main
from .pipeline import measure

SIZES = (10, 100, 1000)
LIVE = 10  # rules the traffic matches, always the last ones
ACTIONS = ("view", "engage", "submit", "success", "complete")
EVENTS = 50


def _groups() -> dict[str, Any]:
    with (default_rules_path() / "groups.toml").open("rb") as fh:
        return tomllib.load(fh)


def table(size: int) -> RuleTable:
    """`size` fuzzy rules; the first size-10 never match the bench's traffic."""
    fuzzy: list[dict[str, Any]] = [
        {
            "name": f"filler-{i}",
            "match": rf"^flow\.filler{i}-([\w-]+)\.(view|engage|submit)$",
            "group": "login",
            "event": "{1|snake}_{2}",
        }
        for i in range(size - LIVE)
    ]
    fuzzy += [
        {
            "name": f"live-{j}",
            "match": rf"^flow\.step{j}\.({'|'.join(ACTIONS)})$",
            "group": "registration",
            "event": f"step{j}_{{1}}",
        }
        for j in range(LIVE)
    ]
    return compile_rules_from_dict([("groups.toml", _groups()), ("bench.toml", {"fuzzy": fuzzy})])


def names() -> list[str]:
    return [f"flow.step{j}.{a}" for j in range(LIVE) for a in ACTIONS]


def uncached(rules: RuleTable, duration: float) -> float:
    """Lookups/s with the cache cleared before every pass over the traffic's names."""
    traffic = names()
    count = 0
    start = time.perf_counter()
    deadline = start + duration
    while time.perf_counter() < deadline:
        rules.cache_clear()
        for name in traffic:
            assert rules.match(name) is not None
        count += len(traffic)
    return count / (time.perf_counter() - start)


def run(duration: float, smoke: bool) -> ScenarioResult:
    cpu = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {cpu})
    rows = []
    notes = [
        f"pinned to CPU {cpu}; the traffic ({EVENTS} events a batch) matches only the last"
        f" {LIVE} rules, so an uncached lookup tries every filler rule first",
    ]
    tables = []
    for size in SIZES:
        start = time.perf_counter()
        tables.append((size, table(size), time.perf_counter() - start))
    # Interleaved rounds, the median of each: drift on a shared machine hits every size.
    rounds = 1 if smoke else 3
    runs: dict[int, list[Figures]] = {size: [] for size in SIZES}
    for _ in range(rounds):
        for size, rules, _ in tables:
            runs[size].append(measure(rules, duration, f"{size} fuzzy rules", EVENTS, names()))
    for size, rules, compiled in tables:
        ordered = sorted(runs[size], key=lambda f: f.events_per_s or 0.0)
        rows.append(ordered[len(ordered) // 2])
        scan = uncached(rules, min(duration, 2.0))
        notes.append(
            f"{size} fuzzy rules: compiled in {compiled:.2f} s; uncached lookups {scan:,.0f}/s"
        )
    notes.append(f"{rounds} interleaved rounds of {duration:g} s per table, median round")
    return ScenarioResult(scenario="rules", title=TITLES["rules"], rows=rows, notes=notes)


if __name__ == "__main__":
    scenario_main(run)
