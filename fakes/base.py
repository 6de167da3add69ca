"""What the fake destinations share: injectable hangs and resets, and waiting on them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FaultyServer:
    """Faults applied to the next requests, one each: an HTTP status, "reset" or "hang"
    (never answer until `release()`); subclasses may add their own kinds."""

    faults: list[Any] = field(default_factory=list)
    # Every request hangs (a dead destination) while true.
    hang_all: bool = False
    statuses: list[int] = field(default_factory=list)
    # Requests hanging right now.
    hung: int = 0
    # False: validate and answer as always, but keep no copy of what was taken (the
    # delivery bench sends millions of events); `taken` counts them either way.
    keep: bool = True
    taken: int = 0

    def __post_init__(self) -> None:
        self.changed = asyncio.Condition()
        self._release = asyncio.Event()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)

    def release(self) -> None:
        """Let every hung request (and future "hang" faults) answer."""
        self.hang_all = False
        self._release.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _take_fault(self, request: web.Request) -> tuple[Any, web.StreamResponse | None]:
        """(the fault applied, the answer it forces); hangs and resets are handled here."""
        fault = self.faults.pop(0) if self.faults else None
        if self.hang_all or fault == "hang":
            self.hung += 1
            await self._notify()
            await self._release.wait()
            self.hung -= 1
            return None, None
        if fault == "reset":
            assert request.transport is not None
            request.transport.close()
            return fault, web.Response(status=500)
        return fault, None
