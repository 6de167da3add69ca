"""Delivery throughput: events/s each delivery sink delivers to its fake on loopback.

Scenario 6 of the bench: `run(duration_s)` returns {"amplitude_events_per_s": ...,
"vwo_events_per_s": ...}. Run alone with `python -m bench.delivery [seconds]`.

The sink runs on one CPU; the fakes run in a process of their own on another
(`bench.destinations`), and the records are built before the clock starts: the figure is
the sink's work (prepare, encode, post, classify), not the fake's or the producer's.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from router.dispatch import MemoryBuffer, SinkRunner
from router.records import AmplitudeEvent, Record, VwoConversion
from router.sinks.amplitude import AmplitudeSink
from router.sinks.base import Sink
from router.sinks.vwo import VwoSink
from router.stats import Stats

from .destinations import API_KEY
from .procs import Server
from .scenarios.sinks import records

VWO_SETTINGS = Path(__file__).resolve().parents[1] / "tests" / "data" / "vwo-settings.json"
DEVICE = "0f3a6c1e9b7d4e2a8c5b1d0e7f6a9b3c"
UID = "44794bdf0be84d4e8c7a8026b8580fa3"


def amplitude_record(i: int) -> Record:
    return AmplitudeEvent(
        event_type="fxa_login - submit",
        time=1_700_000_000_000 + i,
        user_id=UID,
        device_id=DEVICE,
        session_id=1_699_999_990_000,
        event_properties={"service": "sync"},
        user_properties={"entrypoint": "firstrun", "$append": {"fxa_services_used": "sync"}},
    )


def vwo_record(i: int) -> Record:
    return VwoConversion(
        name="signin_complete", user_id=UID, time=1_700_000_000_000 + i, properties={}
    )


@contextmanager
def destinations(cpu: int | None) -> Iterator[list[str]]:
    """`bench.destinations` in a child process: [amplitude url, vwo url, account, sdk key]."""
    with Server([sys.executable, "-m", "bench.destinations"], "ready", cpu) as server:
        ready = next(line for line in server.tail if line.startswith("ready"))
        yield ready.split()[1:]


async def _measure(
    sink: Sink, make: Callable[[int], Record], batch_size: int, duration_s: float
) -> float:
    stats = Stats()
    buffer = MemoryBuffer(sink.name, stats, queue_size=1_000_000, batch_size=batch_size)
    runner = SinkRunner(sink, stats, buffer)
    await sink.start()
    runner.start()
    # Built before the clock starts and submitted again and again: the producer's cost
    # stays out of the sink's figure.
    pool = [make(k) for k in range(batch_size * 4)]
    start = time.perf_counter()
    end = start + duration_s
    give_up = start + max(duration_s, 30.0)

    def more() -> bool:
        now = time.perf_counter()
        # A very short run still waits for the first delivery, so the rate is not 0.
        return now < end or (stats.get("sink.sent", sink=sink.name) == 0 and now < give_up)

    while more():
        if buffer.queued < batch_size * 8:
            runner.submit(pool)
        await asyncio.sleep(0.001)
    delivered = stats.get("sink.sent", sink=sink.name)
    elapsed = time.perf_counter() - start
    buffer.queue.clear()
    await runner.close(10.0)
    return delivered / elapsed


async def _run(duration_s: float, urls: list[str]) -> dict[str, float]:
    amp_url, vwo_url, account, sdk_key = urls
    amplitude = AmplitudeSink(
        "amplitude",
        api_key=API_KEY,
        hmac_key="bench-hmac-key",
        url=f"{amp_url}/batch",
        identify_url=f"{amp_url}/identify",
        concurrency=4,
    )
    vwo_sink = VwoSink(
        "vwo",
        account_id=int(account),
        sdk_key=sdk_key,
        url=vwo_url,
        settings_path=str(VWO_SETTINGS),
        concurrency=2,
    )
    # Records as the pipeline makes them (the events of a request share their property
    # dicts, which the sink splits once per request, as in production).
    made = [r for r in records(12_000) if isinstance(r, AmplitudeEvent)][:4000]
    amp_rate = await _measure(amplitude, lambda i: made[i % len(made)], 1000, duration_s)
    vwo_rate = await _measure(vwo_sink, vwo_record, 100, duration_s)
    return {"amplitude_events_per_s": amp_rate, "vwo_events_per_s": vwo_rate}


def run(duration_s: float) -> dict[str, float]:
    """Events/s delivered by each sink to its local fake, each measured for `duration_s`.

    This process runs on its first CPU, the fakes on the next one (when there is one).
    """
    allowed = os.sched_getaffinity(0)
    available = sorted(allowed)
    os.sched_setaffinity(0, {available[0]})
    try:
        with destinations(available[1] if len(available) > 1 else None) as urls:
            return asyncio.run(_run(duration_s, urls))
    finally:
        os.sched_setaffinity(0, allowed)


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    for name, value in run(seconds).items():
        print(f"{name:26} {value:12,.0f}")
