"""The long-lived objects of one router process, reachable from every handler."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .config import Settings
from .deadletter import DeadLetters
from .dispatch import Dispatcher
from .flow import FlowSigner
from .mapping import Pipeline
from .stats import Stats


@dataclass
class RouterState:
    settings: Settings
    stats: Stats
    signer: FlowSigner
    pipeline: Pipeline
    dispatcher: Dispatcher
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    deadletters: DeadLetters | None = None


STATE = web.AppKey("state", RouterState)
