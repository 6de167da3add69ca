"""A sink without a spool that falls behind makes ingest refuse work (503), not drop it."""

from __future__ import annotations

import asyncio

from router.app import make_app
from router.config import Settings
from router.dispatch import MemoryBuffer
from router.ruletable import RuleTable
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import AiohttpClient
from ..support.bodies import body
from ..support.spool_sinks import VolatileGatedSink


async def test_busy_sink_gives_503_and_nothing_is_dropped(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable
) -> None:
    stats = Stats()
    sink = VolatileGatedSink(up=False)
    client = await aiohttp_client(make_app(settings, rules=rules, sinks=[sink], stats=stats))
    (runner,) = client.app[DISPATCHER].runners
    assert isinstance(runner.buffer, MemoryBuffer)
    runner.buffer.queue_size = 40  # busy from 36 queued records on
    data = body([("flow.signin.submit", 1), ("screen.signin", 2)])  # 4 records a batch
    statuses = []
    for _ in range(30):
        resp = await client.post("/metrics", json=data)
        statuses.append(resp.status)
        if resp.status == 503:
            assert resp.headers["Retry-After"] == str(settings.spool.retry_after_seconds)
            assert (await resp.json())["statusCode"] == 503
        await asyncio.sleep(0)  # let the accepted batch reach the queue
    accepted = statuses.count(200)
    assert 0 < accepted < 30 and statuses.count(503) == 30 - accepted
    assert (
        stats.get("request.rejected", endpoint="/metrics", reason="sink_busy", status="503")
        == 30 - accepted
    )
    sink.up.set()
    await client.app[DISPATCHER].flush()
    assert len(sink.records) == 4 * accepted  # every accepted record delivered
    assert stats.total("sink.dropped") == 0
    resp = await client.post("/metrics", json=data)
    assert resp.status == 200  # recovered
