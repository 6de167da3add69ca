"""Running the app: uvloop, graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
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
# glibc's malloc: blocks of up to MMAP_THRESHOLD come from the heap, and up to
# TRIM_THRESHOLD of free heap is kept rather than handed back to the kernel.
MMAP_THRESHOLD = 32 << 20  # glibc's largest
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h


def tune_malloc() -> bool:
    """Keep the log sink's multi-megabyte buffers in the heap; True if glibc took it.

    A 4,000-record log batch is encoded into buffers of a few MB. By default glibc
    maps each from the kernel and unmaps it when freed, so every batch paid for a
    page fault and a zeroed page per 4 KiB (11-14% of the router's CPU in `perf` at
    50-event batches, +33% requests/s without it). Off glibc this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


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
    tune_malloc()


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
