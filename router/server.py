"""Running the app: uvloop, graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Mapping

from aiohttp import web

from .app import make_app
from .config import Settings
from .ruletable.ruleset import RuleSet
from .sinks import FACTORIES, SinkFactory

log = logging.getLogger(__name__)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def settle_heap() -> None:
    """Move start-up objects (rule tables, parsers) out of the collector's sight.

    They live as long as the process; without this every full collection walks them.
    """
    gc.collect()
    gc.freeze()


def serve(
    settings: Settings,
    *,
    ruleset: RuleSet | None = None,
    sink_factories: Mapping[str, SinkFactory] = FACTORIES,
) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight work and drain the sinks.

    `ruleset`: the checked rule set (`checks.prepare`); read again when not given.
    """
    if settings.server.workers > 1:
        from .workers import serve_workers

        serve_workers(settings, ruleset=ruleset, sink_factories=sink_factories)
        return
    app = make_app(settings, ruleset=ruleset, sink_factories=sink_factories)
    settle_heap()
    server = settings.server
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    # run_app owns the loop from here and closes it on exit.
    web.run_app(
        app,
        host=server.host,
        port=server.port,
        shutdown_timeout=server.shutdown_timeout_seconds,
        access_log=None,
        # Called once the sockets are bound: a reliable readiness line.
        print=lambda _: log.info(
            "metrics-router listening on http://%s:%d", server.host, server.port
        ),
        loop=loop,
        handle_signals=True,
    )
