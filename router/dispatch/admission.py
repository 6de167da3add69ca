"""Ingest's gate: a sink that falls behind slows its clients down instead of refusing them.

While a memory buffer is nearly full (`sink_busy`), requests wait here, first come
first served, for room: a closed-loop client then simply gets its answer later, as
from FxA's own server. Only when the wait runs out (`[server] backpressure_wait_ms`)
does ingest answer 503 with Retry-After. A full spool or disk is not waited for:
that refusal stands at once (docs/durability.md).

Waiters are let in one at a time: each one's records reach the buffers (a submit)
before the next is woken, so a crowd of waiters cannot overshoot the buffer's bound
in the one loop turn they would otherwise all wake in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

# Refusals that clear by themselves as a sink catches up: worth waiting for.
WAITABLE = frozenset({"sink_busy"})


class Admission:
    """Waits for room in the buffers; `poke` when room may have appeared."""

    def __init__(self, refusal: Callable[[], str | None]) -> None:
        self._refusal = refusal
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for room now."""
        return len(self._waiters)

    def ready(self) -> bool:
        """Room now and nobody queued before: the fast path, no await."""
        return not self._waiters and self._refusal() is None

    async def enter(self, timeout: float) -> str | None:
        """None once there is room; else the refusal that stands (503).

        A busy sink is waited for up to `timeout` seconds; any other refusal at once.
        """
        reason = self._refusal()
        if reason is None and not self._waiters:
            return None
        if reason is not None and reason not in WAITABLE:
            return reason
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = True
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            # A waiter woken without room keeps its place at the head of the line.
            if first:
                self._waiters.append(waiter)
            else:
                self._waiters.appendleft(waiter)
            first = False
            if reason is None:
                self.poke()  # room already: only the ones before us were in the way
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                self._leave(waiter)
                return self._refusal() or "sink_busy"
            except BaseException:
                self._leave(waiter)
                raise
            reason = self._refusal()
            if reason is None:
                return None
            if reason not in WAITABLE:
                return reason

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """Out of the line (timed out, cancelled); a wake-up already given goes on."""
        if waiter.done():
            if not waiter.cancelled():
                self.poke()
            return
        self._waiters.remove(waiter)
        waiter.cancel()

    def poke(self) -> None:
        """Room may have appeared (a sink took a batch, a request's records were queued):
        let the next waiter in, if there is room for it."""
        waiters = self._waiters
        if not waiters:
            return
        reason = self._refusal()
        if reason is not None and reason in WAITABLE:
            return
        # With room, or with a refusal that no wait will clear: the next one learns which.
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
