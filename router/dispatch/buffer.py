"""Buffers between ingest and a sink: put records, take a batch with a ticket, ack or keep it.

`MemoryBuffer` is a bounded queue: what exceeds it is dropped, counted and logged.
`SpoolBuffer` (`dispatch/spooled.py`) adds a disk spool under the same interface, so
the runner has one loop for both: `take` → send → `ack` (or `keep`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from ..records import Record
from ..sinks.base import Dropped
from ..stats import Stats

log = logging.getLogger(__name__)


class Chunk:
    """The records one submit (a request's, or a loop turn's) produced for one sink,
    tracked until all are settled; in a memory buffer, several submits' up to a batch."""

    __slots__ = ("records", "size", "taken", "pending", "row", "done", "keep", "waiter")

    def __init__(self, records: list[Record], row: int | None = None) -> None:
        self.records = records
        self.size = len(records)
        self.taken = 0
        self.pending = 0
        # Its spool row once written (SpoolBuffer only).
        self.row = row
        self.done = False
        # Sending failed and dead-lettering too: leave it in the spool for the next start.
        self.keep = False
        self.waiter: asyncio.Future[None] | None = None


class Ticket:
    """A batch handed to a worker: its records and the chunks they came from."""

    __slots__ = ("records", "parts")

    def __init__(self, records: list[Record], parts: list[tuple[Chunk, int]]) -> None:
        self.records = records
        self.parts = parts


def resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Buffer(Protocol):
    """What a runner needs of a buffer (MemoryBuffer, SpoolBuffer, the forwarder's BusBuffer)."""

    # Survives a restart: a failed batch is given up (dead-lettered) rather than lost.
    durable: bool
    # Takes back what it keeps and hands it out again later (the bus): never give up.
    redelivers: bool
    queued: int
    closing: bool

    @property
    def refusal(self) -> str | None: ...
    def put(self, records: Sequence[Record]) -> asyncio.Future[None] | None: ...
    async def take(self) -> Ticket | None: ...
    def ack(self, ticket: Ticket) -> None: ...
    def keep(self, ticket: Ticket, error: Exception | None = None) -> None: ...
    def retain(self, dropped: Dropped) -> bool: ...
    async def open(self) -> None: ...
    def start(self) -> None: ...
    async def flush(self) -> None: ...
    def stop(self) -> None: ...
    def abandon(self) -> None: ...
    async def close(self, timeout: float) -> None: ...


class MemoryBuffer:
    """A bounded in-memory queue of chunks; batches are cut across chunk boundaries."""

    durable = False
    redelivers = False

    def __init__(
        self,
        name: str,
        stats: Stats,
        *,
        queue_size: int = 200_000,
        batch_size: int = 1000,
        linger_ms: int = 0,
    ) -> None:
        self.name = name
        self.stats = stats
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.linger = linger_ms / 1000
        self.queue: deque[Chunk] = deque()
        # Records in `queue` not yet taken.
        self.queued = 0
        # Tickets taken and neither acked nor kept.
        self.in_flight = 0
        self.closing = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tags = {"sink": name}
        self._received = stats.counter("sink.received", self._tags)  # once per put
        self._full_logged_at = -1e9
        self._full_unlogged = 0
        # Called when a take made room (the dispatcher's admission: waiting ingest goes on).
        self.on_room: Callable[[], None] | None = None
        stats.gauge("sink.queue_depth", lambda: self.queued, self._tags)

    @property
    def refusal(self) -> str | None:
        """`sink_busy` when the queue is nearly full: ingest waits for room (admission.py).

        The last tenth of the queue is headroom for batches accepted just before.
        """
        if self.queued >= self.queue_size - self.queue_size // 10:
            return "sink_busy"
        return None

    def put(self, records: Sequence[Record]) -> asyncio.Future[None] | None:
        """Queue records without waiting; what exceeds the bound is dropped and counted."""
        room = self.queue_size - self.queued
        if len(records) > room:
            dropped = len(records) - max(room, 0)
            self.stats.incr("sink.dropped", dropped, {**self._tags, "reason": "queue_full"})
            self._log_full(dropped)
            records = records[: max(room, 0)]
        if not records:
            return None
        count = len(records)
        self._received.incr(count)
        queue = self.queue
        if queue:
            # Requests share a chunk up to a batch: in memory a chunk has no row or waiter
            # of its own, so one per request was only bookkeeping (a Chunk made, cut and
            # settled each). A chunk part of which was taken is left as it is.
            tail = queue[-1]
            if not tail.taken and tail.size + count <= self.batch_size:
                tail.records += records
                tail.size += count
                self.queued += count
                return None  # the queue was not empty: the worker needs no wake-up
        self._append(Chunk(list(records)))
        return None

    def _append(self, chunk: Chunk) -> None:
        self.queue.append(chunk)
        self.queued += chunk.size
        self._idle.clear()
        self._wake.set()

    def _log_full(self, dropped: int) -> None:
        # At most one line a second: a dead destination must not turn ingest into logging.
        self._full_unlogged += dropped
        now = time.monotonic()
        if now - self._full_logged_at >= 1.0:
            log.warning("sink %s: queue full, %d records dropped", self.name, self._full_unlogged)
            self._full_logged_at = now
            self._full_unlogged = 0

    # -- the worker side ----------------------------------------------------------------------

    async def _refill(self) -> bool:
        """Bring older work into the queue (the spool's disk-only rows); True if it tried."""
        return False

    def _settled(self) -> bool:
        """Nothing left anywhere but in the queue (SpoolBuffer: nothing on disk only)."""
        return True

    async def take(self) -> Ticket | None:
        """The next batch, waiting for one; None once closing and nothing is left."""
        while True:
            if not self.queue:
                # Cleared before any await, so a wake-up during `_refill` is not missed.
                self._wake.clear()
                if await self._refill():
                    continue
                if self.closing:
                    return None
                if self.in_flight == 0 and self._settled():
                    self._idle.set()
                await self._wake.wait()
                continue
            if self.linger and self.queued < self.batch_size and not self.closing:
                # Let a batch fill up so a quiet period costs one write, not many.
                await asyncio.sleep(self.linger)
            ticket = self._cut()
            if self.on_room is not None:
                self.on_room()
            if ticket.records:
                self.in_flight += 1
                return ticket

    def _cut(self) -> Ticket:
        """Up to `batch_size` records from the head of the queue."""
        batch: list[Record] = []
        parts: list[tuple[Chunk, int]] = []
        queue = self.queue
        while queue and len(batch) < self.batch_size:
            chunk = queue[0]
            count = min(self.batch_size - len(batch), chunk.size - chunk.taken)
            batch.extend(chunk.records[chunk.taken : chunk.taken + count])
            chunk.taken += count
            chunk.pending += count
            parts.append((chunk, count))
            if chunk.taken == chunk.size:
                queue.popleft()
        self.queued -= len(batch)
        return Ticket(batch, parts)

    def ack(self, ticket: Ticket) -> None:
        """The batch is delivered, or dead-lettered: forget it."""
        self._settle(ticket, keep=False)

    def keep(self, ticket: Ticket, error: Exception | None = None) -> None:
        """The batch failed and could not be dead-lettered (in memory: lost, as counted)."""
        self._settle(ticket, keep=True)

    def retain(self, dropped: Dropped) -> bool:
        """Is a drop already kept here (so not to be dead-lettered)? Only in a replay."""
        return False

    def _settle(self, ticket: Ticket, keep: bool) -> None:
        self.in_flight -= 1
        for chunk, count in ticket.parts:
            chunk.pending -= count
            chunk.keep = chunk.keep or keep
            if chunk.pending == 0 and chunk.taken == chunk.size:
                self._finish(chunk)

    def _finish(self, chunk: Chunk) -> None:
        chunk.done = True
        resolve(chunk.waiter)
        chunk.records = []

    # -- lifetime ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Load what survived the last run (nothing, in memory)."""

    def start(self) -> None:
        """Start background work (the spool's commit loop)."""

    async def flush(self) -> None:
        """Wait until everything put so far has been taken and settled."""
        while self.queue or self.in_flight or not self._settled():
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    def stop(self) -> None:
        """No more waiting for work: `take` returns None once the queue is empty."""
        self.closing = True
        self._wake.set()

    def abandon(self) -> None:
        """The shutdown deadline passed with records still queued: they are lost."""
        left = self.queued
        self.stats.incr("sink.dropped", left, {**self._tags, "reason": "shutdown_timeout"})
        log.error("sink %s: %d records not delivered by shutdown", self.name, left)

    async def close(self, timeout: float) -> None:
        """Release what the buffer holds open (the spool's file)."""


class SourceBuffer:
    """A buffer filled from elsewhere (the bus, the dead-letter store), not by `put`.

    It keeps what it hands out until told, and takes back what is kept (the bus
    redelivers, the store keeps the row), so the runner never gives a batch up.
    Settling a ticket may need I/O: subclasses run it with `_later`.
    """

    durable = True
    redelivers = True
    queued = 0
    refusal: str | None = None

    def __init__(self) -> None:
        self.closing = False
        self._stopped = asyncio.Event()
        self._settling: set[asyncio.Task[None]] = set()

    def put(self, records: Sequence[Record]) -> asyncio.Future[None] | None:
        raise TypeError(f"{type(self).__name__} is not filled by put")

    async def open(self) -> None:
        """Nothing to load: records are read as workers ask for them."""

    def start(self) -> None:
        """Nothing runs in the background."""

    def retain(self, dropped: Dropped) -> bool:
        return False

    def _later(self, settle: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(settle)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def flush(self) -> None:
        # A settle that failed (an ack the bus lost) is redelivered by the source: log it and
        # go on, so that closing still reaches the sink.
        for outcome in await asyncio.gather(*self._settling, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("%s: settling a batch failed: %r", type(self).__name__, outcome)

    def stop(self) -> None:
        self.closing = True
        self._stopped.set()

    def abandon(self) -> None:
        """What was not settled stays at its source."""

    async def close(self, timeout: float) -> None:
        await self.flush()
