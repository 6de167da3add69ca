"""Counters: statsd lines over a real UDP socket, and the exact Prometheus text at /__stats__."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
import pytest
from blockbuster import BlockBuster

from router.app import make_app
from router.config import Settings, StatsSettings, override
from router.ruletable import RuleTable
from router.ruletable.registry import Registry
from router.sinks.memory import MemorySink
from router.state import DISPATCHER, STATS
from router.stats import Stats, StatsdExporter

from .conftest import AiohttpClient, Client
from .support.bodies import body
from .support.sidecar import TOKEN, AuthRules, MakeClient, event, send


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for line in data.decode().splitlines():
            self.lines.put_nowait(line)


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, Collector]]:
    """A statsd server on a free loopback port: its "host:port" and what it received."""
    loop = asyncio.get_running_loop()
    transport, received = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}", received
    finally:
        transport.close()


async def test_statsd_lines_and_prometheus_text(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    rules: RuleTable,
    registry: Registry,
    blockbuster: BlockBuster,
    collector: tuple[str, Collector],
) -> None:
    address, received = collector
    statsd = StatsSettings(statsd=address, default_sample_rate=0.5)
    settings = msgspec.structs.replace(settings, stats=statsd)
    sink = MemorySink()
    app = make_app(settings, rules=rules, sinks=[sink], registry=registry)
    client = await aiohttp_client(app)
    stats: Stats = app[STATS]
    assert stats.default_sample_rate == 0.5
    stats.incr("probe.exact", 1, {"k": "v"}, sample_rate=1.0)
    for _ in range(200):  # none of 200 coin flips sent: 2**-200
        stats.incr("probe.sampled")
    async with asyncio.timeout(5):
        first = await received.lines.get()
        assert first == "metrics_router.probe.exact:1|c|#k:v"
        sampled = await received.lines.get()
    assert sampled == "metrics_router.probe.sampled:1|c|@0.5"

    resp = await client.post("/metrics", json=body([("screen.signin", 10)]))
    assert resp.status == 200
    await app[DISPATCHER].flush()
    resp = await client.get("/__stats__")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    lines = set(text.splitlines())
    assert "# TYPE metrics_router_probe_sampled_total counter" in lines
    assert "metrics_router_probe_sampled_total 200" in lines  # exact, not sampled
    assert 'metrics_router_probe_exact_total{k="v"} 1' in lines
    assert "metrics_router_metrics_events_accepted_total 1" in lines
    assert "metrics_router_metrics_events_mapped_total 1" in lines
    assert 'metrics_router_sink_sent_total{sink="memory"} 2' in lines
    assert "# TYPE metrics_router_sink_queue_depth gauge" in lines
    assert 'metrics_router_sink_queue_depth{sink="memory"} 0' in lines


def test_prometheus_escapes_label_values() -> None:
    stats = Stats()
    stats.incr("odd.name-x", 2, {"path": 'a"b\\c\nd'})
    assert 'metrics_router_odd_name_x_total{path="a\\"b\\\\c\\nd"} 2' in stats.prometheus()


def test_statsd_not_listening_warns_once_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed below: nothing listens there
    stats = Stats()
    exporter = StatsdExporter(f"127.0.0.1:{port}", "metrics_router", stats)
    exporter.open()
    stats.exporters.append(exporter)
    try:
        with caplog.at_level("DEBUG"):
            for _ in range(200):
                stats.incr("probe", 1, sample_rate=1.0)
    finally:
        exporter.close()
    # Loopback reports the refusal on the next send: about every other packet is lost.
    assert exporter.dropped > 0
    assert stats.get("stats.statsd.dropped") == exporter.dropped
    assert stats.get("probe") == 200
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "stats.statsd.dropped" in warnings[0].getMessage()
    # Characters that would break a DogStatsD line are replaced, as its client does.
    assert exporter.line("k", 2, {"reason": "a b|c,d"}, 0.25) == (
        b"metrics_router.k:2|c|@0.25|#reason:a_b_c_d"
    )


class Recorder:
    """An exporter that keeps every call (the Exporter protocol, implemented for real)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def incr(self, key: str, amount: int, tags: Mapping[str, str] | None, rate: float) -> None:
        self.calls.append((key, amount))


async def test_no_zero_mapped_line_for_events_without_a_rule(
    make_client: MakeClient, stats: Stats, client: Client
) -> None:
    recorder = Recorder()
    stats.exporters.append(recorder)
    sidecar = await make_client()
    await send(sidecar, event("device.deleted"))  # registered, and no rule maps it
    resp = await client.post("/metrics", json=body([("no.such.event", 10)]))
    assert resp.status == 200
    await client.app[DISPATCHER].flush()
    assert ("server_events.unmapped", 1) in recorder.calls
    assert ("metrics.events.unmapped", 1) in recorder.calls
    assert [c for c in recorder.calls if c[0].endswith(".mapped")] == []


async def test_statsd_and_prometheus_spell_tag_values_alike(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    registry: Registry,
    blockbuster: BlockBuster,
    collector: tuple[str, Collector],
) -> None:
    address, received = collector
    conf = override(settings, stats={"statsd": address}, sidecar={"token": TOKEN})
    app = make_app(conf, rules=AuthRules(), sinks=[MemorySink()], registry=registry)
    client = await aiohttp_client(app)
    await send(client, event("account.created", metrics_context=None, token_id="a1"))
    async with asyncio.timeout(5):
        while "context.invalid" not in (line := await received.lines.get()):
            pass
    assert line == ("metrics_router.server_events.context.invalid:1|c|#reason:missing_context")
    resp = await client.get("/__stats__")
    text = await resp.text()
    assert (
        'metrics_router_server_events_context_invalid_total{reason="missing_context"} 1'
        in text.splitlines()
    )


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, Mapping[str, str] | None, float]] = []

    def incr(self, key: str, amount: int, tags: Mapping[str, str] | None, rate: float) -> None:
        self.calls.append((key, amount, tags, rate))


def test_a_counter_handle_counts_and_exports_as_incr_does() -> None:
    stats = Stats(default_sample_rate=0.5)
    recorder = _Recorder()
    stats.exporters.append(recorder)
    handle = stats.counter("requests", {"status": "200", "endpoint": "/metrics"})
    handle.incr()
    handle.incr(2)
    stats.incr("requests", 1, {"endpoint": "/metrics", "status": "200"})
    assert stats.get("requests", endpoint="/metrics", status="200") == 4
    assert recorder.calls[0] == ("requests", 1, {"status": "200", "endpoint": "/metrics"}, 0.5)
    assert [c[1] for c in recorder.calls] == [1, 2, 1]
