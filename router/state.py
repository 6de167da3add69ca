"""The long-lived objects of one router process, reachable from every handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .config import Settings
from .context import StashService
from .deadletter import DeadLetters
from .dispatch import Dispatcher
from .flow import FlowSigner
from .ingest import Deferred
from .mapping import Pipeline
from .registry import Registry
from .stats import Stats
from .tap import Tap


@dataclass
class RouterState:
    settings: Settings
    stats: Stats
    signer: FlowSigner
    pipeline: Pipeline
    dispatcher: Dispatcher
    stash: StashService
    registry: Registry
    # The process's one dead-letter store (it opens its file on first use).
    deadletters: DeadLetters
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    # What `/__stats__` shows when it is not `stats` alone: with several workers,
    # every worker's counters summed (set by `router.workers`).
    stats_view: Callable[[], Awaitable[Stats]] | None = None
    deferred: Deferred = field(init=False)
    # `metrics-router tap`'s subscribers; empty (and free) when nobody taps.
    tap: Tap = field(init=False)

    def __post_init__(self) -> None:
        runners = self.dispatcher.runners
        self.tap = Tap(lambda: [(r.sink.name, r.sink.kinds) for r in runners])
        self.deferred = Deferred(self.pipeline, self.dispatcher, self.tap)


STATE = web.AppKey("state", RouterState)
