"""make_app(): routes, the process's long-lived objects, and their start and stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web

from .config import Settings, SinkSettings, deadletter_path
from .context import ContextStore, MemcachedStore, MemoryStore, StashService
from .deadletter import DeadLetters
from .dispatch import Dispatcher, SinkRunner
from .flow import FlowSigner
from .handlers import admin, dockerflow, sidecar
from .handlers.common import error_middleware
from .handlers.metrics import post_metrics
from .handlers.metrics_flow import get_metrics_flow, options_metrics_flow
from .mapping import Pipeline
from .registry import Registry, RegistryError, load_registry
from .ruletable import RuleError, RuleTable, default_rules_path, load_rules
from .sinks import Sink, build_sinks
from .spool import Spool
from .state import STATE, RouterState
from .stats import Stats, StatsdExporter

log = logging.getLogger(__name__)


def rule_paths(settings: Settings) -> list[Path]:
    return [Path(p) for p in settings.rules.paths] or [default_rules_path()]


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
) -> web.Application:
    """The router as an aiohttp application.

    `rules`, `registry` and `sinks` replace what the settings name (tests and benchmarks).
    """
    stats = stats or Stats(settings.stats.default_sample_rate)
    signer = FlowSigner(flow_key(settings), settings.flow.expiry_seconds)
    table = rules if rules is not None else load_rules(rule_paths(settings))
    pipeline = Pipeline(table, signer, stats, settings.flow.clients)
    # One dead-letter store for the process; it opens its file on first use.
    deadletters = DeadLetters(deadletter_path(settings), stats)
    if sinks is None:
        configured = build_sinks(settings, deadletters)
    else:
        configured = [(sink, SinkSettings(queue_size=1_000_000)) for sink in sinks]
    spool = settings.spool
    runners = [
        SinkRunner(
            sink,
            stats,
            queue_size=conf.queue_size,
            batch_size=conf.batch_size,
            linger_ms=getattr(conf, "flush_interval_ms", 0),
            spool=Spool(
                Path(spool.path) / f"{sink.name}.db", max_bytes=spool.max_bytes, fsync=spool.fsync
            )
            if sink.durable
            else None,
            deadletters=deadletters,
            commit_interval_ms=spool.commit_interval_ms,
            memory_records=spool.memory_records,
            strict=spool.strict,
        )
        for sink, conf in configured
    ]
    state = RouterState(
        settings=settings,
        stats=stats,
        signer=signer,
        pipeline=pipeline,
        dispatcher=Dispatcher(runners),
        stash=StashService(context_store(settings), settings.context.ttl_seconds, stats),
        registry=registry if registry is not None else load_registry(rule_paths(settings)),
        deadletters=deadletters,
        allowed_origins=frozenset(settings.flow.allowed_origins),
    )
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[STATE] = state
    app.router.add_get("/metrics-flow", get_metrics_flow)
    app.router.add_route("OPTIONS", "/metrics-flow", options_metrics_flow)
    app.router.add_post("/metrics", post_metrics)
    app.router.add_get("/__version__", dockerflow.get_version)
    app.router.add_get("/__heartbeat__", dockerflow.get_heartbeat)
    app.router.add_get("/__lbheartbeat__", dockerflow.get_lbheartbeat)
    app.router.add_get("/__stats__", dockerflow.get_stats)
    app.router.add_post("/sidecar/events", sidecar.post_events)
    app.router.add_post("/sidecar/context", sidecar.post_context)
    app.router.add_post("/sidecar/context/propagate", sidecar.post_context_propagate)
    app.router.add_get("/__openapi__", admin.get_openapi)
    app.router.add_get("/__tap__", admin.get_tap)
    app.on_shutdown.append(admin.close_taps)
    app.cleanup_ctx.append(_sinks_ctx)
    app.cleanup_ctx.append(_context_ctx)
    app.cleanup_ctx.append(_statsd_ctx)
    app.cleanup_ctx.append(_sighup_ctx)
    return app


def context_store(settings: Settings) -> ContextStore:
    conf = settings.context
    if conf.memcached:
        return MemcachedStore(conf.memcached, conf.timeout_ms / 1000)
    return MemoryStore(conf.memory_max_entries)


async def _context_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    if not state.settings.sidecar.token:
        log.warning("no [sidecar] token configured: the /sidecar endpoints refuse every request")
    yield
    await state.stash.store.aclose()


async def _statsd_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    conf = state.settings.stats
    if not conf.statsd:
        yield
        return
    exporter = StatsdExporter(conf.statsd, conf.prefix)
    await asyncio.to_thread(exporter.open)
    state.stats.exporters.append(exporter)
    yield
    state.stats.exporters.remove(exporter)
    exporter.close()


async def _sinks_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.dispatcher.start()
    yield
    # Batches accepted just before shutdown are processed by loop callbacks;
    # let them run before the queues are drained.
    await asyncio.sleep(0)
    await state.dispatcher.close(state.settings.server.shutdown_timeout_seconds)
    await state.deadletters.close()


async def reload_rules(app: web.Application) -> bool:
    """Compile the rule files again; keep serving the old table if the new one is broken."""
    state = app[STATE]
    paths = rule_paths(state.settings)
    try:
        table = await asyncio.to_thread(load_rules, paths)
    except RuleError as exc:
        for problem in exc.problems:
            log.error("rules reload refused: %s", problem)
        state.stats.incr("rules.reload", 1, {"result": "refused"})
        return False
    try:
        registry = await asyncio.to_thread(load_registry, paths)
    except RegistryError as exc:
        for p in exc.problems:
            log.error("rules reload refused: %s: %s: %s", p.file, p.event, p.message)
        state.stats.incr("rules.reload", 1, {"result": "refused"})
        return False
    state.pipeline.rules = table
    state.registry = registry
    state.stats.incr("rules.reload", 1, {"result": "ok"})
    log.info("rules reloaded: %d exact, %d fuzzy", table.exact_count, table.fuzzy_count)
    return True


async def _sighup_ctx(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = loop.create_task(reload_rules(app))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, ValueError):
        installed = False  # not the main thread, or no signals here
    else:
        installed = True
    yield
    if installed:
        loop.remove_signal_handler(signal.SIGHUP)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
