"""A sink without a spool that falls behind slows ingest down (it waits for room, bounded);
only a sink that stays down past the wait makes it refuse work (503). Nothing is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from router.app import make_app
from router.config import Settings, override
from router.dispatch import MemoryBuffer
from router.records import Record
from router.ruletable import RuleTable
from router.sinks.log import LogSink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import AiohttpClient, Client
from ..support.bodies import body
from ..support.spool_sinks import VolatileGatedSink

# Two events: a flow event and an Amplitude event each, 4 records a batch.
DATA = body([("flow.signin.submit", 1), ("screen.signin", 2)])


async def _gated_client(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable, stats: Stats
) -> tuple[Client, VolatileGatedSink]:
    sink = VolatileGatedSink(up=False)
    client = await aiohttp_client(make_app(settings, rules=rules, sinks=[sink], stats=stats))
    (runner,) = client.app[DISPATCHER].runners
    assert isinstance(runner.buffer, MemoryBuffer)
    runner.buffer.queue_size = 40  # busy from 36 queued records on
    return client, sink


async def test_sink_down_past_the_wait_gives_503_and_nothing_is_dropped(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable
) -> None:
    stats = Stats()
    settings = override(settings, server={"backpressure_wait_ms": 20})
    client, sink = await _gated_client(aiohttp_client, settings, rules, stats)
    statuses = []
    for _ in range(30):
        resp = await client.post("/metrics", json=DATA)
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
    assert stats.get("ingest.waited") == 30 - accepted  # each refused one waited first
    sink.up.set()
    await client.app[DISPATCHER].flush()
    assert len(sink.records) == 4 * accepted  # every accepted record delivered
    assert stats.total("sink.dropped") == 0
    resp = await client.post("/metrics", json=DATA)
    assert resp.status == 200  # recovered


async def test_busy_sink_slows_the_client_down_instead_of_refusing(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable
) -> None:
    stats = Stats()
    settings = override(settings, server={"backpressure_wait_ms": 60_000})
    client, sink = await _gated_client(aiohttp_client, settings, rules, stats)
    admission = client.app[DISPATCHER].admission
    posted = 0
    while admission.ready() and posted < 20:  # until 36 records are queued: busy
        assert (await client.post("/metrics", json=DATA)).status == 200
        await asyncio.sleep(0)  # let the accepted batch reach the queue
        posted += 1
    assert not admission.ready()
    late = asyncio.create_task(client.post("/metrics", json=DATA))
    for _ in range(1000):  # bounded: until the request is in the line
        if admission.waiting:
            break
        await asyncio.sleep(0.005)
    assert admission.waiting == 1 and not late.done()
    sink.up.set()  # the sink catches up: the waiting request is answered, with a 200
    resp = await late
    assert resp.status == 200
    await client.app[DISPATCHER].flush()
    assert len(sink.records) == 4 * (posted + 1)
    assert stats.total("request.rejected") == 0 and stats.total("sink.dropped") == 0


class SlowLogSink(LogSink):
    """A log sink that takes a while per batch: a slow disk."""

    async def send(self, records: Sequence[Record]) -> None:
        await asyncio.sleep(0.005)  # the slowness itself, not synchronisation
        await super().send(records)


async def test_64_closed_loop_clients_against_a_slow_log_sink_get_no_refusal(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable, tmp_path: Path
) -> None:
    stats = Stats()
    path = tmp_path / "events.log"
    sink = SlowLogSink("log", str(path))
    client = await aiohttp_client(make_app(settings, rules=rules, sinks=[sink], stats=stats))
    (runner,) = client.app[DISPATCHER].runners
    assert isinstance(runner.buffer, MemoryBuffer)
    # Room for what 64 clients have in flight at once (the tenth kept as headroom is for
    # requests let in just before), far less than what they send in all.
    runner.buffer.queue_size = 2600  # a tenth: 260 >= 64 requests x 4 records
    runner.buffer.batch_size = 8

    async def closed_loop() -> list[int]:
        return [(await client.post("/metrics", json=DATA)).status for _ in range(16)]

    statuses = [s for one in await asyncio.gather(*(closed_loop() for _ in range(64))) for s in one]
    assert statuses == [200] * 1024
    assert stats.get("ingest.waited") > 0  # the sink was behind: clients did wait
    await client.app[DISPATCHER].flush()
    assert len(path.read_bytes().splitlines()) == 4 * 1024  # every record written
    assert stats.total("sink.dropped") == 0


async def test_sidecar_events_wait_or_are_refused_too_never_dropped(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable
) -> None:
    # The sidecar goes through the same gate as POST /metrics: a 200 means queued.
    stats = Stats()
    settings = override(
        settings, server={"backpressure_wait_ms": 20}, sidecar={"token": "sidecar-token"}
    )
    client, sink = await _gated_client(aiohttp_client, settings, rules, stats)
    headers = {"Authorization": "Bearer sidecar-token"}
    events = {"events": [{"event": "account.created", "uid": "0" * 32, "service": "sync"}] * 4}
    statuses = []
    for _ in range(30):
        resp = await client.post("/sidecar/events", json=events, headers=headers)
        statuses.append(resp.status)
        await asyncio.sleep(0)
    accepted = statuses.count(200)
    assert 0 < accepted < 30 and statuses.count(503) == 30 - accepted
    sink.up.set()
    await client.app[DISPATCHER].flush()
    assert stats.total("sink.dropped") == 0
    assert len(sink.records) > 0 and len(sink.records) % accepted == 0
