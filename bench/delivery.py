"""Delivery throughput: events/s each delivery sink delivers to its fake on loopback.

Scenario 6 of the bench: `run(duration_s)` returns {"amplitude_events_per_s": ...,
"vwo_events_per_s": ...}. Run alone with `python -m bench.delivery [seconds]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from fakes.amplitude import FakeAmplitude
from fakes.vwo import FakeVwo
from router.dispatch import MemoryBuffer, SinkRunner
from router.records import AmplitudeEvent, Record, VwoConversion
from router.sinks.amplitude import AmplitudeSink
from router.sinks.base import Sink
from router.sinks.vwo import VwoSink
from router.stats import Stats

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


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def _measure(
    sink: Sink, make: Callable[[int], Record], batch_size: int, duration_s: float
) -> float:
    stats = Stats()
    buffer = MemoryBuffer(sink.name, stats, queue_size=1_000_000, batch_size=batch_size)
    runner = SinkRunner(sink, stats, buffer)
    await sink.start()
    runner.start()
    i = 0
    start = time.perf_counter()
    end = start + duration_s
    give_up = start + max(duration_s, 30.0)

    def more() -> bool:
        now = time.perf_counter()
        # A very short run still waits for the first delivery, so the rate is not 0.
        return now < end or (stats.get("sink.sent", sink=sink.name) == 0 and now < give_up)

    while more():
        if len(buffer.queue) < batch_size * 8:
            runner.submit([make(i + k) for k in range(batch_size * 4)])
            i += batch_size * 4
        await asyncio.sleep(0.001)
    delivered = stats.get("sink.sent", sink=sink.name)
    elapsed = time.perf_counter() - start
    buffer.queue.clear()
    await runner.close(10.0)
    return delivered / elapsed


async def _run(duration_s: float) -> dict[str, float]:
    amp = FakeAmplitude()
    amp_runner, amp_url = await _serve(amp.app)
    vwo = FakeVwo()
    vwo_runner, vwo_url = await _serve(vwo.app)
    try:
        amplitude = AmplitudeSink(
            "amplitude",
            api_key=amp.api_key,
            hmac_key="bench-hmac-key",
            url=f"{amp_url}/batch",
            identify_url=f"{amp_url}/identify",
            concurrency=4,
        )
        vwo_sink = VwoSink(
            "vwo",
            account_id=vwo.account_id,
            sdk_key=vwo.sdk_key,
            url=vwo_url,
            settings_path=str(VWO_SETTINGS),
            concurrency=2,
        )
        amp_rate = await _measure(amplitude, amplitude_record, 1000, duration_s)
        vwo_rate = await _measure(vwo_sink, vwo_record, 100, duration_s)
    finally:
        await amp_runner.cleanup()
        await vwo_runner.cleanup()
    return {"amplitude_events_per_s": amp_rate, "vwo_events_per_s": vwo_rate}


def run(duration_s: float) -> dict[str, float]:
    """Events/s delivered by each sink to its local fake, each measured for `duration_s`."""
    return asyncio.run(_run(duration_s))


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    for name, value in run(seconds).items():
        print(f"{name:26} {value:12,.0f}")
