"""Scenario 6: each sink's throughput.

The log sink's own rate (records encoded and written to a file) is measured here; the
delivery sinks (Amplitude, VWO, ...) against local fake destinations come from
`bench.delivery.run(duration_s)` when that module exists (branch `delivery`).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
import time
from pathlib import Path

from router.enrich.flow import FlowSigner, now_ms
from router.handlers.metrics import decode_body
from router.mapping import Pipeline, RequestInfo
from router.records import Record
from router.ruletable import default_rules_path, load_rules
from router.ruletable.ruleset import RuleSet
from router.sinks.log import LogSink
from router.stats import Stats

from ..procs import count_lines
from ..results import Figures, ScenarioResult
from ..traffic import FLOW_KEY, USER_AGENT, body_bytes
from . import TITLES, scenario_main

BATCH = 1000  # the log sink's default batch_size


def records(count: int) -> list[Record]:
    """Realistic records (Amplitude and flow events) from the pipeline, `count` of them."""
    signer = FlowSigner(FLOW_KEY)
    pipeline = Pipeline(RuleSet(load_rules([default_rules_path()])), signer, Stats())
    req = RequestInfo(received=now_ms(), user_agent=USER_AGENT, locale="en-US")
    out: list[Record] = []
    while len(out) < count:
        batch = pipeline.process_batch(decode_body(body_bytes(signer, 50)), req)
        out += [*batch.amplitude, *batch.flow, *batch.vwo]
    return out[:count]


async def log_sink_rate(path: Path, duration: float) -> tuple[float, int, float]:
    """(records/s, lines written, MB/s) through LogSink.send, batches of BATCH records."""
    batch = records(BATCH)
    sink = LogSink("log", str(path))
    sent = 0
    async with sink:
        start = time.perf_counter()
        deadline = start + duration
        while time.perf_counter() < deadline:
            await sink.send(batch)
            sent += len(batch)
        seconds = time.perf_counter() - start
    lines = await asyncio.to_thread(count_lines, path)
    size = path.stat().st_size
    return sent / seconds, lines, size / seconds / 1e6


def delivery(duration: float) -> dict[str, float] | None:
    try:
        module = importlib.import_module("bench.delivery")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.delivery":
            raise
        return None
    figures: dict[str, float] = module.run(duration)
    return figures


def run(duration: float, smoke: bool) -> ScenarioResult:
    result = ScenarioResult(scenario="sinks", title=TITLES["sinks"])
    # First, with every CPU: bench.delivery puts the sink on one and the fakes on another.
    figures = delivery(duration)
    cpu = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {cpu})
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        rate, lines, mb = asyncio.run(log_sink_rate(Path(tmp) / "sink.log", duration))
    result.rows.append(Figures(label="log sink, to a file", seconds=duration, records_per_s=rate))
    result.notes.append(
        f"log sink: {lines:,} lines written, {mb:,.0f} MB/s, batches of {BATCH}, pinned to CPU"
        f" {cpu} (the write thread shares it)"
    )
    if figures is None:
        result.notes.append("delivery sinks: not available (bench.delivery is not on this branch)")
    else:
        for name, value in figures.items():
            result.rows.append(Figures(label=name, seconds=duration, records_per_s=value))
    return result


if __name__ == "__main__":
    scenario_main(run)
