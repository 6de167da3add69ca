"""Running the app: uvloop, graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Mapping

from aiohttp import web

from . import build_kind
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


GC_YOUNG = 20_000


def settle_heap() -> None:
    """Move start-up objects (rule tables, parsers) out of the collector's sight.

    They live as long as the process; without this every full collection walks them.
    """
    gc.collect()
    gc.freeze()
    # Every request allocates a few hundred container objects (aiohttp's, the records'
    # dicts) that live until the response is written or the sink has written them; at
    # the default 700 the youngest generation was collected several times a request
    # (6% of a 1-event request's CPU in py-spy). Nothing here makes cycles to reclaim
    # soon, so collect young objects in far fewer, larger passes.
    gc.set_threshold(GC_YOUNG, 20, 100)


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
            "metrics-router listening on http://%s:%d (%s)", server.host, server.port, build_kind()
        ),
        loop=loop,
        handle_signals=True,
    )
