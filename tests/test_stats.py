"""Counters: statsd lines over a real UDP socket, and the exact Prometheus text at /__stats__."""

from __future__ import annotations

import asyncio
from typing import Any

from blockbuster import BlockBuster

from router.app import make_app
from router.config import Settings, StatsSettings
from router.registry import Registry
from router.ruletable import RuleTable
from router.sinks.memory import MemorySink
from router.state import STATE
from router.stats import Stats

from .conftest import AiohttpClient
from .helpers import body


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for line in data.decode().splitlines():
            self.lines.put_nowait(line)


async def test_statsd_lines_and_prometheus_text(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    rules: RuleTable,
    registry: Registry,
    blockbuster: BlockBuster,
) -> None:
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        settings.stats = StatsSettings(statsd=f"127.0.0.1:{port}", default_sample_rate=0.5)
        sink = MemorySink()
        app = make_app(settings, rules=rules, sinks=[sink], registry=registry)
        client = await aiohttp_client(app)
        stats: Stats = app[STATE].stats
        assert stats.default_sample_rate == 0.5
        stats.incr("probe.exact", 1, {"k": "v"}, sample_rate=1.0)
        for _ in range(200):  # none of 200 coin flips sent: 2**-200
            stats.incr("probe.sampled")
        async with asyncio.timeout(5):
            first = await collector.lines.get()
            assert first == "metrics_router.probe.exact:1|c|#k:v"
            sampled = await collector.lines.get()
        assert sampled == "metrics_router.probe.sampled:1|c|@0.5"

        resp = await client.post("/metrics", json=body([("screen.signin", 10)]))
        assert resp.status == 200
        await app[STATE].dispatcher.flush()
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
    finally:
        transport.close()


def test_prometheus_escapes_label_values() -> None:
    stats = Stats()
    stats.incr("odd.name-x", 2, {"path": 'a"b\\c\nd'})
    assert 'metrics_router_odd_name_x_total{path="a\\"b\\\\c\\nd"} 2' in stats.prometheus()
