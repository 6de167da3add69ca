"""One sink's workers: take a batch from its buffer, send it, ack it; and the one failure path.

`Delivery` is the only place that counts what a sink delivered and dead-letters what
it dropped or failed on. Every runner sends through it: the router's sinks (memory and
spool buffers), the forwarder's (`BusBuffer`, router/bus/forward.py) and `dlq replay`'s
(`ReplayBuffer`, dispatch/replay.py); the buffer says what a failure means for it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence

from ..errors import DeadLetterError, DeliveryError
from ..records import Record
from ..sinks.base import Dropped, Sink
from ..stats import Stats
from .buffer import Buffer, MemoryBuffer, Ticket
from .deadletter import DeadLetters
from .spool import is_disk_full

log = logging.getLogger(__name__)


def disk_full(exc: BaseException | None) -> bool:
    """ENOSPC anywhere in the chain of causes (a log file, a spool, the dead-letter store)."""
    while exc is not None:
        if is_disk_full(exc):
            return True
        exc = exc.__cause__
    return False


class Delivery:
    """Send through a sink, count the outcome, dead-letter the drops: once, here."""

    def __init__(self, sink: Sink, stats: Stats, deadletters: DeadLetters | None) -> None:
        self.sink = sink
        self.stats = stats
        self.deadletters = deadletters
        self._tags = {"sink": sink.name}

    async def send(
        self, records: Sequence[Record], retain: Callable[[Dropped], bool] | None = None
    ) -> Exception | None:
        """None once every record is delivered or dead-lettered; else why not.

        On an error nothing is known to be delivered: the caller keeps the batch,
        retries it or gives it up with `dead_letter`. Drops for which `retain` is
        true are not stored (`dlq replay` keeps their rows instead).
        """
        try:
            dropped = list(await self.sink.send(records) or ())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.incr("sink.failed", len(records), {**self._tags, "reason": "error"})
            log.warning(
                "sink %s: send failed for %d records: %r", self.sink.name, len(records), exc
            )
            return exc
        lost = sum(1 for d in dropped if d.kind is None)
        if len(records) > lost:
            self.stats.incr("sink.sent", len(records) - lost, self._tags)
        if retain is not None:
            dropped = [d for d in dropped if not retain(d)]
        try:
            await self.dead_letter(dropped)
        except DeadLetterError as exc:
            return exc
        return None

    async def dead_letter(self, dropped: Sequence[Dropped], detail: str | None = None) -> None:
        """Count, log (one line per reason) and store drops; DeadLetterError if not stored."""
        groups: dict[tuple[str | None, str], list[object]] = {}
        for d in dropped:
            if d.keep:
                groups.setdefault((d.kind, d.reason), []).append(d.record)
        sink = self.sink
        for (kind, reason), records in groups.items():
            kind = kind or sink.dead_letter_kind
            tags = {**self._tags, "reason": reason, **({"kind": kind} if kind else {})}
            if self.deadletters is None:
                # A volatile sink has no store: what it drops is gone, counted as such.
                self.stats.incr("sink.dropped", len(records), tags)
                log.warning("sink %s: %d records dropped: %s", sink.name, len(records), reason)
                continue
            own = kind == sink.dead_letter_kind
            destination = sink.name if own else f"{sink.name}-{kind}"
            try:
                await self.deadletters.add(destination, reason, records, detail)
            except (sqlite3.Error, OSError) as exc:
                log.error(
                    "sink %s: dead-letter store %s not written (%s)",
                    sink.name,
                    self.deadletters.path,
                    exc,
                )
                raise DeadLetterError(str(exc)) from exc
            self.stats.incr("sink.dead_lettered", len(records), tags)
            noun = kind or "record"
            log.warning("sink %s: %d %ss dead-lettered: %s", sink.name, len(records), noun, reason)


class SinkRunner:
    """A sink, its buffer and the workers between them."""

    def __init__(
        self,
        sink: Sink,
        stats: Stats,
        buffer: Buffer | None = None,
        deadletters: DeadLetters | None = None,
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self.sink = sink
        self.stats = stats
        sink.stats = stats
        self.buffer: Buffer = buffer or MemoryBuffer(sink.name, stats)
        # A sink without a spool has nowhere to keep what it gave up on.
        self.delivery = Delivery(sink, stats, deadletters if self.buffer.durable else None)
        self.retry_seconds = retry_seconds
        # Set while a send or dead-letter write hits ENOSPC: the batch waits, ingest refuses.
        self.disk_full = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    @property
    def refusal(self) -> str | None:
        """Why ingest must answer 503 now, or None."""
        return "disk_full" if self.disk_full.is_set() else self.buffer.refusal

    def submit(self, records: Sequence[Record]) -> asyncio.Future[None] | None:
        """Queue records without waiting (the buffer's `put`)."""
        return self.buffer.put(records)

    async def open(self) -> None:
        await self.buffer.open()

    def start(self) -> None:
        for i in range(max(1, self.sink.concurrency)):
            self._workers.append(
                asyncio.create_task(self._work(), name=f"sink-{self.sink.name}-{i}")
            )
        self.buffer.start()

    async def _work(self) -> None:
        buffer = self.buffer
        while (ticket := await buffer.take()) is not None:
            # Cancelled in here: neither acked nor kept, so it stays staged or spooled.
            error = await self._settle(ticket)
            if error is None:
                buffer.ack(ticket)
            else:
                buffer.keep(ticket, error)

    async def _settle(self, ticket: Ticket) -> Exception | None:
        """Deliver a batch or give it up; the error if it must stay in the buffer."""
        while True:
            error = await self._attempt(ticket.records)
            if error is None:
                self.disk_full.clear()
                return None
            full = disk_full(error)
            if self.buffer.closing or not (full or _retry_later(error)):
                return error
            # Waited out with the batch kept: no room on disk (ingest refuses meanwhile),
            # or a destination that is down rather than a batch that is bad.
            if full and not self.disk_full.is_set():
                log.error("sink %s: disk full; refusing work until there is room", self.sink.name)
                self.disk_full.set()
            await asyncio.sleep(self.retry_seconds)

    async def _attempt(self, records: list[Record]) -> Exception | None:
        """Send once. What failed is dead-lettered (`sink_error`) by a durable buffer that
        does not redeliver, counted and forgotten by a volatile one, handed back otherwise."""
        error = await self.delivery.send(records, self.buffer.retain)
        if (
            error is None
            or isinstance(error, DeadLetterError)
            or self.buffer.redelivers
            or _retry_later(error)
        ):
            return error
        if self.delivery.deadletters is None:
            return error if disk_full(error) else None
        try:
            await self.delivery.dead_letter(
                [Dropped("sink_error", r) for r in records],
                detail=f"{type(error).__name__}: {error}",
            )
        except DeadLetterError as exc:
            return exc
        return None

    async def flush(self) -> None:
        """Wait until everything queued so far (and spooled) has been handed to the sink."""
        await self.buffer.flush()

    async def close(self, timeout: float) -> None:
        """Drain the buffer (within `timeout`), stop the workers, close buffer and sink."""
        await self.stop(timeout)
        await self.sink.aclose()

    async def stop(self, timeout: float) -> None:
        """All of `close` but closing the sink (which `dlq replay` does not own)."""
        self.buffer.stop()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._workers)
        except TimeoutError:
            self.buffer.abandon()
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        await self.buffer.close(timeout)


def _retry_later(error: Exception) -> bool:
    """Is this a failure to wait out with the batch kept (DeliveryError.retry_later)?"""
    return isinstance(error, DeliveryError) and error.retry_later
