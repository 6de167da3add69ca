"""The typed keys under which one router app keeps its long-lived objects.

Each resource with a lifetime (sinks, stores, exporters) has one owner: the cleanup
context in `router.app` that opens and closes it. The rest are plain values; settings
are frozen. The rule set lives in the pipeline and is swapped whole on reload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .config import Settings
from .dispatch import Dispatcher
from .dispatch.deadletter import DeadLetters
from .enrich.context import StashService
from .enrich.flow import FlowSigner
from .ingest import Deferred
from .mapping import Pipeline
from .stats import Stats
from .watching.tap import Tap

# What `/__stats__` shows: with several workers, every worker's counters summed.
StatsView = Callable[[], Awaitable[Stats]]

SETTINGS = web.AppKey("settings", Settings)
STATS = web.AppKey("stats", Stats)
STATS_VIEW: web.AppKey[StatsView] = web.AppKey("stats_view")
SIGNER = web.AppKey("signer", FlowSigner)
PIPELINE = web.AppKey("pipeline", Pipeline)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
DEFERRED = web.AppKey("deferred", Deferred)
STASH = web.AppKey("stash", StashService)
DEADLETTERS = web.AppKey("deadletters", DeadLetters)
ALLOWED_ORIGINS: web.AppKey[frozenset[str]] = web.AppKey("allowed_origins")
# `metrics-router tap`'s subscribers; empty (and free) when nobody taps.
TAP = web.AppKey("tap", Tap)
