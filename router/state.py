"""The long-lived objects of one router process, reachable from every handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .config import Settings
from .context import StashService
from .dispatch import Dispatcher
from .flow import FlowSigner
from .mapping import Pipeline
from .registry import Registry
from .stats import Stats


@dataclass
class RouterState:
    settings: Settings
    stats: Stats
    signer: FlowSigner
    pipeline: Pipeline
    dispatcher: Dispatcher
    stash: StashService
    registry: Registry
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    # What `/__stats__` shows when it is not `stats` alone: with several workers,
    # every worker's counters summed (set by `router.workers`).
    stats_view: Callable[[], Awaitable[Stats]] | None = None


STATE = web.AppKey("state", RouterState)
