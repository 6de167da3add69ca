"""make_app(): routes, the process's long-lived objects, and their start and stop.

Every resource with a lifetime has one owner, a cleanup context here, and one typed
key (`router.state`). aiohttp runs the contexts in order and closes them in reverse,
so the dead-letter store outlives the sinks that write to it; if one fails to start,
those before it are closed again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from pathlib import Path

from aiohttp import web

from . import __version__
from .checks import check, prepare, rule_paths
from .config import Settings, SinkSettings, deadletter_path
from .dispatch import DiskCheck, Dispatcher, MemoryBuffer, SinkRunner, SpoolBuffer
from .dispatch.deadletter import DeadLetters
from .dispatch.spool import Spool
from .enrich.context import ContextStore, MemcachedStore, MemoryStore, StashService
from .enrich.flow import FlowSigner
from .enrich.geo import GeoDB
from .enrich.locale import LocaleMatcher
from .handlers import admin, dockerflow, sidecar
from .handlers.common import add_routes
from .handlers.metrics import post_metrics
from .handlers.metrics_flow import get_metrics_flow, options_metrics_flow
from .ingest import Deferred
from .mapping import Pipeline
from .ruletable import RuleTable
from .ruletable.registry import Registry, load_registry
from .ruletable.ruleset import RuleSet
from .sinks import FACTORIES, Sink, SinkFactory, build_sinks
from .sinks.log import LogSink
from .state import (
    ALLOWED_ORIGINS,
    DEADLETTERS,
    DEFERRED,
    DISPATCHER,
    PIPELINE,
    SETTINGS,
    SIGNER,
    STASH,
    STATS,
    TAP,
)
from .stats import Stats, exporting
from .warmup import warm
from .watching.tap import Tap

log = logging.getLogger(__name__)

__all__ = ["make_app", "reload_rules", "reopen_logs", "rule_paths"]


def flow_key(settings: Settings) -> str:
    if settings.flow.key:
        return settings.flow.key
    log.warning(
        "no [flow] key configured: using a random key; flow ids will not verify "
        "across restarts or other processes"
    )
    return os.urandom(32).hex()


def make_app(
    settings: Settings,
    *,
    rules: RuleTable | None = None,
    sinks: Sequence[Sink] | None = None,
    stats: Stats | None = None,
    registry: Registry | None = None,
    ruleset: RuleSet | None = None,
    sink_factories: Mapping[str, SinkFactory] = FACTORIES,
) -> web.Application:
    """The router as an aiohttp application.

    `ruleset` (or `rules` and `registry`) and `sinks` replace what the settings name (tests
    and benchmarks); `sink_factories` build the sinks of `[sinks.<name>]` sections. Without
    a rule set, everything is checked first (`checks.prepare`): StartupError lists every
    problem.
    """
    if ruleset is None:
        if rules is None:
            ruleset = prepare(settings).ruleset
            assert ruleset is not None
        else:
            found = registry if registry is not None else load_registry(rule_paths(settings))
            ruleset = RuleSet(rules, found)
    stats = stats or Stats(settings.stats.default_sample_rate)
    signer = FlowSigner(flow_key(settings), settings.flow.expiry_seconds)
    pipeline = Pipeline(
        ruleset,
        signer,
        stats,
        settings.flow.clients,
        settings.amplitude.app_version or __version__,
        # Opened here, not on first use: the first request must not pay for it.
        geo=GeoDB(settings.geo.database, settings.geo.cache_size) if settings.geo.enabled else None,
        locales=LocaleMatcher(settings.flow.supported_locales, settings.flow.default_locale),
    )
    deadletters = DeadLetters(deadletter_path(settings), stats)
    if sinks is None:
        configured = build_sinks(settings, deadletters, sink_factories)
    else:
        configured = [(sink, SinkSettings(queue_size=1_000_000)) for sink in sinks]
    spool = settings.spool
    dispatcher = Dispatcher(
        [_runner(settings, sink, conf, stats, deadletters) for sink, conf in configured],
        DiskCheck(spool.path, spool.min_free_disk_mb),
    )

    app = web.Application(client_max_size=settings.server.max_body_bytes)
    app[SETTINGS] = settings
    app[STATS] = stats
    app[SIGNER] = signer
    app[PIPELINE] = pipeline
    app[DISPATCHER] = dispatcher
    runners = dispatcher.runners
    tap = Tap(lambda: [(r.sink.name, r.sink.kinds) for r in runners])
    app[TAP] = tap
    app[DEFERRED] = Deferred(pipeline, dispatcher, tap)
    app[STASH] = StashService(context_store(settings), settings.context.ttl_seconds, stats)
    app[DEADLETTERS] = deadletters
    app[ALLOWED_ORIGINS] = frozenset(settings.flow.allowed_origins)
    add_routes(
        app,
        [
            ("GET", "/metrics-flow", get_metrics_flow),
            ("OPTIONS", "/metrics-flow", options_metrics_flow),
            ("POST", "/metrics", post_metrics),
            ("GET", "/__version__", dockerflow.get_version),
            ("GET", "/__heartbeat__", dockerflow.get_heartbeat),
            ("GET", "/__lbheartbeat__", dockerflow.get_lbheartbeat),
            ("GET", "/__stats__", dockerflow.get_stats),
            ("POST", "/sidecar/events", sidecar.post_events),
            ("POST", "/sidecar/context", sidecar.post_context),
            ("POST", "/sidecar/context/propagate", sidecar.post_context_propagate),
            ("GET", "/__openapi__", admin.get_openapi),
            ("GET", "/__tap__", admin.get_tap),
        ],
        stats,
        tap,
        dispatcher,
    )
    app.on_shutdown.append(admin.close_taps)
    # Started in this order, closed in the reverse one.
    app.cleanup_ctx.append(_deadletters_ctx)
    app.cleanup_ctx.append(_statsd_ctx)
    app.cleanup_ctx.append(_sinks_ctx)
    app.cleanup_ctx.append(_context_ctx)
    app.cleanup_ctx.append(_signals_ctx)
    app.cleanup_ctx.append(_warm_ctx)
    return app


def _runner(
    settings: Settings, sink: Sink, conf: SinkSettings, stats: Stats, deadletters: DeadLetters
) -> SinkRunner:
    """A sink's runner: a spool buffer for a durable sink, a memory buffer for the others."""
    spool = settings.spool
    linger_ms = getattr(conf, "flush_interval_ms", 0)
    buffer: MemoryBuffer | SpoolBuffer
    if sink.durable:
        buffer = SpoolBuffer(
            sink.name,
            stats,
            Spool(
                Path(spool.path) / f"{sink.name}.db", max_bytes=spool.max_bytes, fsync=spool.fsync
            ),
            batch_size=conf.batch_size,
            linger_ms=linger_ms,
            commit_interval_ms=spool.commit_interval_ms,
            memory_records=spool.memory_records,
            strict=spool.strict,
        )
    else:
        buffer = MemoryBuffer(
            sink.name,
            stats,
            queue_size=conf.queue_size,
            batch_size=conf.batch_size,
            linger_ms=linger_ms,
        )
    return SinkRunner(sink, stats, buffer, deadletters)


def context_store(settings: Settings) -> ContextStore:
    conf = settings.context
    if conf.memcached:
        return MemcachedStore(conf.memcached, conf.timeout_ms / 1000)
    return MemoryStore(conf.memory_max_entries)


async def _deadletters_ctx(app: web.Application) -> AsyncIterator[None]:
    # Opened on first use by whoever writes; closed here only, after every sink.
    yield
    await app[DEADLETTERS].close()


async def _context_ctx(app: web.Application) -> AsyncIterator[None]:
    if not app[SETTINGS].sidecar.token:
        log.warning("no [sidecar] token configured: the /sidecar endpoints refuse every request")
    yield
    await app[STASH].store.aclose()


async def _statsd_ctx(app: web.Application) -> AsyncIterator[None]:
    conf = app[SETTINGS].stats
    async with exporting(app[STATS], conf.statsd, conf.prefix):
        yield


async def _sinks_ctx(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[DISPATCHER]
    # Rolls back on its own: a sink that fails to start stops the ones started before it.
    await dispatcher.start()
    yield
    # Batches accepted just before shutdown are processed by loop callbacks;
    # let them run before the queues are drained.
    await asyncio.sleep(0)
    await dispatcher.close(app[SETTINGS].server.shutdown_timeout_seconds)


async def _warm_ctx(app: web.Application) -> AsyncIterator[None]:
    # Last: with the sinks started, the first request finds nothing left to build.
    await warm(app[PIPELINE], [r.sink for r in app[DISPATCHER].runners])
    yield


async def reload_rules(app: web.Application) -> bool:
    """Read the rule set again; keep serving the old one if the new one has errors.

    The same check as at start (`checks.check`), of the rule files only: the VWO settings
    and the paths were checked at start and are not re-read by a reload.
    """
    stats = app[STATS]
    checked = await asyncio.to_thread(check, app[SETTINGS], files=False)
    ruleset = checked.ruleset
    if ruleset is None:
        for problem in checked.problems:
            log.error("rules reload refused: %s", problem)
        stats.incr("rules.reload", 1, {"result": "refused"})
        return False
    for problem in checked.problems:
        log.warning("rules reload: %s", problem)
    app[PIPELINE].use(ruleset)
    await warm(app[PIPELINE], [])  # the new table's caches, before its first request
    stats.incr("rules.reload", 1, {"result": "ok"})
    rules = ruleset.rules
    log.info("rules reloaded: %d exact, %d fuzzy", rules.exact_count, rules.fuzzy_count)
    return True


async def reopen_logs(app: web.Application) -> None:
    """Reopen the log sinks' files: after logrotate renamed them (SIGHUP, SIGUSR1)."""
    for runner in app[DISPATCHER].runners:
        if isinstance(runner.sink, LogSink):
            await runner.sink.reopen()


async def _on_hup(app: web.Application) -> None:
    await reopen_logs(app)
    await reload_rules(app)


async def _signals_ctx(app: web.Application) -> AsyncIterator[None]:
    """SIGHUP: reopen log files and reload the rules; SIGUSR1: reopen log files (as nginx)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def handler(
        action: Callable[[web.Application], Coroutine[None, None, None]],
    ) -> Callable[[], None]:
        def on_signal() -> None:
            task = loop.create_task(action(app))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return on_signal

    installed: list[signal.Signals] = []
    for sig, action in ((signal.SIGHUP, _on_hup), (signal.SIGUSR1, reopen_logs)):
        try:
            loop.add_signal_handler(sig, handler(action))
        except (NotImplementedError, RuntimeError, ValueError):
            break  # not the main thread, or no signals here
        installed.append(sig)
    yield
    for sig in installed:
        loop.remove_signal_handler(sig)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
