"""Dockerflow endpoints of a delivery worker (`metrics-router forward`), on a port of its own.

`/__lbheartbeat__` (the process answers), `/__heartbeat__` (the bus and the destination
are healthy), `/__stats__` (the forwarder's and its sink's counters, Prometheus text, as the
router's) and `/__version__`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from nats.errors import Error as NatsError

from ..bus.forward import Forwarder
from ..config import Settings
from ..errors import ConfigError
from .common import json_response
from .dockerflow import get_lbheartbeat, get_version

log = logging.getLogger(__name__)

FORWARDER = web.AppKey("forwarder", Forwarder)
PREFIX = web.AppKey("stats_prefix", str)
CHECK_TIMEOUT = 2.0


async def bus_healthy(forwarder: Forwarder) -> bool:
    """Connected, bound, and JetStream answers for the forwarder's consumer."""
    nc, js = forwarder.nc, forwarder.js
    if nc is None or js is None or not nc.is_connected:
        return False
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await js.consumer_info(forwarder.conf.stream, forwarder.durable)
    except (TimeoutError, NatsError, OSError):
        return False
    return True


async def destination_healthy(forwarder: Forwarder) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await forwarder.sink.healthy()
    except (TimeoutError, OSError):
        return False


async def get_heartbeat(request: web.Request) -> web.Response:
    forwarder = request.app[FORWARDER]
    bus_ok, sink_ok = await asyncio.gather(bus_healthy(forwarder), destination_healthy(forwarder))
    checks = {
        f"bus.{forwarder.conf.stream}": "ok" if bus_ok else "error",
        f"destination.{forwarder.destination}": "ok" if sink_ok else "error",
    }
    healthy = bus_ok and sink_ok
    return json_response(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )


async def get_stats(request: web.Request) -> web.Response:
    text = request.app[FORWARDER].stats.prometheus(request.app[PREFIX])
    return web.Response(
        body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


def make_forwarder_app(forwarder: Forwarder, stats_prefix: str) -> web.Application:
    app = web.Application()
    app[FORWARDER] = forwarder
    app[PREFIX] = stats_prefix
    app.router.add_get("/__lbheartbeat__", get_lbheartbeat)
    app.router.add_get("/__heartbeat__", get_heartbeat)
    app.router.add_get("/__stats__", get_stats)
    app.router.add_get("/__version__", get_version)
    return app


@asynccontextmanager
async def serve_dockerflow(forwarder: Forwarder, settings: Settings) -> AsyncIterator[int]:
    """Serve the endpoints while the forwarder runs; yields the bound port."""
    runner = web.AppRunner(
        make_forwarder_app(forwarder, settings.stats.prefix or "metrics_router"), access_log=None
    )
    await runner.setup()
    try:
        host, port = settings.forward.host, settings.forward.port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise ConfigError([f"[forward] {host}:{port}: cannot listen: {exc.strerror}"]) from exc
        if runner.addresses:
            port = int(runner.addresses[0][1])  # the one picked for port 0
        log.info("forwarder %s dockerflow on http://%s:%d", forwarder.destination, host, port)
        yield port
    finally:
        await runner.cleanup()
