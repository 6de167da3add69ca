"""Scenario 4: the in-process pipeline without HTTP, from request bytes to records.

decode (`metrics_body_decoder`), `check_ranges`, `Pipeline.process_batch`: what one
router core does per batch besides HTTP and the sinks' own work.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Sequence

from router.enrich.flow import FlowSigner, now_ms
from router.events import MetricsBody
from router.handlers.metrics import check_ranges, decode_body
from router.mapping import Pipeline, RequestInfo
from router.records import Record
from router.ruletable import RuleTable, default_rules_path, load_rules
from router.ruletable.ruleset import RuleSet
from router.server import tune_malloc
from router.stats import Stats

from ..results import Figures, ScenarioResult
from ..traffic import FLOW_KEY, JOURNEY, USER_AGENT, body_bytes
from . import TITLES, scenario_main

EVENTS = 50
BODIES = 64  # distinct flows, so the flow-signature cache sees more than one
MAX_OFFSET_MS = 172_800_000  # the router's default max_event_offset_seconds


def traffic(
    table: RuleTable, events: int, count: int, names: Sequence[str] = JOURNEY
) -> tuple[Pipeline, list[bytes], RequestInfo]:
    """A pipeline, `count` request bodies of distinct flows begun a minute ago, and their
    request info."""
    signer = FlowSigner(FLOW_KEY)
    pipeline = Pipeline(RuleSet(table), signer, Stats(), app_version="1.2.3")
    now = now_ms()
    bodies = [body_bytes(signer, events, now=now, names=names) for _ in range(count)]
    req = RequestInfo(received=now, user_agent=USER_AGENT, ip="127.0.0.1", locale="en-US")
    return pipeline, bodies, req


def decode_checked(data: bytes) -> MetricsBody:
    """What the handler does before the pipeline: decode, pattern and range checks."""
    body = decode_body(data)
    check_ranges(body, MAX_OFFSET_MS, 1000)
    return body


def measure(
    table: RuleTable,
    duration: float,
    label: str,
    events: int = EVENTS,
    names: Sequence[str] = JOURNEY,
) -> Figures:
    """Events/s of one core through decode, range checks and process_batch."""
    pipeline, bodies, req = traffic(table, events, BODIES, names)
    done_events = records = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + duration
    while True:
        for data in bodies:
            batch = pipeline.process_batch(decode_checked(data), req)
            records += len(batch.amplitude) + len(batch.flow) + len(batch.vwo)
        done_events += BODIES * events
        if time.perf_counter() >= deadline:
            break
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    return Figures(
        label=label,
        seconds=round(seconds, 2),
        requests_per_s=round(done_events / events / seconds, 1),
        events_per_s=round(done_events / seconds, 1),
        records_per_s=round(records / seconds, 1),
        cpu_us_per_event=round(cpu * 1e6 / done_events, 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        events=done_events,
    )


def stages(table: RuleTable, events: int, duration: float) -> list[Figures]:
    """CPU per event of each in-process stage for `events`-event requests, one row a stage:
    the decode with the pattern and range checks, `process_batch`, the log sink's encoding."""
    from router.sinks.log import LogSink

    # As many requests as one 4,000-record log batch holds, from distinct flows.
    count = max(1, 2000 // events)
    pipeline, bodies, req = traffic(table, events, count)
    decoded = [decode_checked(data) for data in bodies]
    records: list[Record] = []
    for body in decoded:
        batch = pipeline.process_batch(body, req)
        records.extend(batch.flow)
        records.extend(batch.amplitude)
    sink = LogSink("bench", "/dev/null")
    steps: list[tuple[str, Callable[[], object]]] = [
        ("decode and checks", lambda: [decode_checked(data) for data in bodies]),
        ("process_batch", lambda: [pipeline.process_batch(body, req) for body in decoded]),
        ("log sink encode", lambda: sink.encode(records)),
    ]
    rows = []
    for name, step in steps:
        done = 0
        cpu0 = time.process_time()
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            step()
            done += 1
        cpu = time.process_time() - cpu0
        per_event = cpu * 1e6 / (done * count * events)
        rows.append(
            Figures(
                label=f"stage: {name}, {events} event{'s' if events > 1 else ''} a request",
                seconds=round(duration, 2),
                requests_per_s=round(1e6 / (per_event * events), 1),
                events_per_s=round(1e6 / per_event, 1),
                cpu_us_per_event=round(per_event, 3),
                cpu_us_per_request=round(per_event * events, 3),
                events=done * count * events,
            )
        )
    return rows


def run(duration: float, smoke: bool) -> ScenarioResult:
    table = load_rules([default_rules_path()])
    # Single-threaded: on one core this is events/s per core.
    cpu = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {cpu})
    row = measure(table, duration, f"{EVENTS} events a batch, bundled rules")
    # Where a request's in-process CPU goes, for the single-event and batch scenarios.
    tune_malloc()  # as in the router: the encoder's buffers stay in the heap
    split = [r for events in (1, EVENTS) for r in stages(table, events, duration / 6)]
    return ScenarioResult(
        scenario="pipeline",
        title=TITLES["pipeline"],
        rows=[row, *split],
        notes=[
            f"pinned to CPU {cpu}; records/s counts Amplitude + flow + VWO records out",
            "stage rows: CPU per event of one stage alone (req/s: requests a second it"
            " alone would allow), distinct flows, the HTTP scenarios' bodies; per request: "
            + ", ".join(
                f"{r.label.removeprefix('stage: ')} {r.cpu_us_per_request:.1f} us" for r in split
            ),
        ],
    )


if __name__ == "__main__":
    scenario_main(run)
