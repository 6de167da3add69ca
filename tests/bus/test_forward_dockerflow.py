"""`metrics-router forward` is observable: Dockerflow endpoints on its own port, quiet when idle."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from router.bus.forward import Forwarder
from router.config import Settings, override
from router.dispatch.deadletter import DeadLetters
from router.handlers.forwarder import serve_dockerflow
from router.records import Record
from router.sinks import Sink
from router.sinks.jetstream import JetStreamSink

from ..support.bus import NatsServer, bus_conf
from ..support.destinations import DedupDestination, HttpPostSink
from .conftest import amplitude
from .test_forward import finish, start_forwarder, write_config


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path / "js") as server:
        yield server


class Unhealthy(Sink):
    kinds = frozenset({"amplitude"})

    async def send(self, records: Sequence[Record]) -> None:
        pass

    async def healthy(self) -> bool:
        return False


def local_settings(port: int = 0) -> Settings:
    return override(Settings(), forward={"port": port})


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as resp:
        return resp.status, await resp.text()


async def test_cli_forwarder_serves_heartbeat_and_its_own_counters(
    nats_server: NatsServer, destination: tuple[DedupDestination, str], tmp_path: Path
) -> None:
    dest, url = destination
    config = write_config(tmp_path / "forward.toml", nats_server.url, "[sinks.memory]\n")
    async with JetStreamSink("jetstream", bus_conf(nats_server.url)) as sink:
        await sink.send(list(map(amplitude, range(40))))
    args = ["-m", "tests.support.forward_http", "--config", str(config), "--port", "0"]
    proc, lines = await start_forwarder(args, {"FORWARD_TEST_URL": url})
    try:
        found = re.search(r"dockerflow on (http://127\.0\.0\.1:\d+)", "".join(lines))
        assert found, lines
        base = found.group(1)
        await dest.wait_for(40)
        async with aiohttp.ClientSession() as http:
            assert await get(http, f"{base}/__lbheartbeat__") == (200, "")
            status, text = await get(http, f"{base}/__heartbeat__")
            assert status == 200, text
            assert '"bus.METRICS":"ok"' in text and '"destination.memory":"ok"' in text
            status, text = await get(http, f"{base}/__stats__")
            assert status == 200
            assert 'metrics_router_forward_delivered_total{destination="memory"} 40' in text
            status, text = await get(http, f"{base}/__version__")
            assert status == 200 and '"version"' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = await finish(proc)
    assert proc.returncode == 0, rest


async def test_heartbeat_names_the_unhealthy_part(nats_server: NatsServer, tmp_path: Path) -> None:
    conf = bus_conf(nats_server.url)
    store = DeadLetters(tmp_path / "dead.db")
    stop, ready = asyncio.Event(), asyncio.Event()
    forwarder = Forwarder(conf, "amplitude", Unhealthy("amplitude"), deadletters=store)
    async with serve_dockerflow(forwarder, local_settings()) as port:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            # Not yet connected to the bus: unhealthy on both counts.
            status, text = await get(http, f"{base}/__heartbeat__")
            assert status == 503 and '"bus.METRICS":"error"' in text
            task = asyncio.create_task(forwarder.run(stop, ready))
            await ready.wait()
            status, text = await get(http, f"{base}/__heartbeat__")
            assert status == 503, text
            assert '"bus.METRICS":"ok"' in text and '"destination.amplitude":"error"' in text
            await nats_server.stop()  # the bus goes away under a running forwarder
            status, text = await get(http, f"{base}/__heartbeat__")
            assert status == 503 and '"bus.METRICS":"error"' in text
            assert await get(http, f"{base}/__lbheartbeat__") == (200, "")
            stop.set()
            await task


async def test_an_idle_forwarder_does_not_warn(
    nats_server: NatsServer,
    destination: tuple[DedupDestination, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = destination
    conf = bus_conf(nats_server.url)
    store = DeadLetters(tmp_path / "dead.db")
    forwarder = Forwarder(conf, "amplitude", HttpPostSink("amplitude", url), deadletters=store)
    stop, ready = asyncio.Event(), asyncio.Event()
    caplog.set_level(logging.INFO, logger="router")
    task = asyncio.create_task(forwarder.run(stop, ready))
    await ready.wait()
    async with asyncio.timeout(15):
        while forwarder.stats.total("forward.empty_pulls") < 2:
            await asyncio.wait({task}, timeout=0.1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    stop.set()
    await task
    assert warnings == []


async def test_a_port_in_use_is_a_clear_config_error(tmp_path: Path) -> None:
    from router.errors import ConfigError

    conf = bus_conf("nats://127.0.0.1:1")
    store = DeadLetters(tmp_path / "dead.db")
    forwarder = Forwarder(conf, "amplitude", Unhealthy("amplitude"), deadletters=store)
    async with serve_dockerflow(forwarder, local_settings()) as port:
        taken = local_settings(port)
        with pytest.raises(ConfigError, match=rf"\[forward\] 127.0.0.1:{port}: cannot listen"):
            async with serve_dockerflow(forwarder, taken):
                pass
