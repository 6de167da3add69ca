"""What the HTTP delivery sinks share: one keep-alive session, counters, dead letters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp

from ..deadletter import DeadLetters, add_dead_letters
from .base import Sink

log = logging.getLogger(__name__)


class HttpDeliverySink(Sink):
    """A durable sink posting to an HTTP API; subclasses add the API's batching and policy."""

    durable: ClassVar[bool] = True
    reports_outcomes: ClassVar[bool] = True
    # The `kind` tag of dead-letter counters and the noun in their log line (None: no tag).
    dead_letter_kind: ClassVar[str | None] = None
    dead_letter_noun: ClassVar[str] = "record"

    def __init__(
        self,
        name: str,
        *,
        deadletters: DeadLetters,
        concurrency: int,
        request_timeout_seconds: float,
    ) -> None:
        super().__init__(name)
        self.deadletters = deadletters
        self.concurrency = concurrency
        self.request_timeout = request_timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        self._tags = {"sink": name}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            connector=aiohttp.TCPConnector(limit=self.concurrency * 2),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _count(self, key: str, amount: int, **tags: str) -> None:
        if amount:
            self.stats.incr(key, amount, {**self._tags, **tags})

    async def _dead_letter(self, items: Sequence[tuple[str, Any]], kind: str | None = None) -> None:
        """Store (reason, record) pairs for good, counted and logged per reason."""
        if not items:
            return
        kind = kind or self.dead_letter_kind
        by_reason: dict[str, int] = {}
        for reason, _ in items:
            by_reason[reason] = by_reason.get(reason, 0) + 1
        noun = kind or self.dead_letter_noun
        for reason, count in by_reason.items():
            tags = {"reason": reason, **({"kind": kind} if kind else {})}
            self._count("sink.dead_lettered", count, **tags)
            log.warning("sink %s: %d %ss dead-lettered: %s", self.name, count, noun, reason)
        extra = kind is not None and kind != self.dead_letter_kind
        destination = f"{self.name}-{kind}" if extra else self.name
        await add_dead_letters(self.deadletters, destination, items)
