"""Fan-out: every sink gets its own bounded queue and workers, so none can stall another."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence

from .records import Record, RecordBatch
from .sinks.base import Sink
from .stats import Stats

log = logging.getLogger(__name__)
DROP_LOG_INTERVAL = 1.0


class SinkRunner:
    """One sink's queue and the workers that feed it batches."""

    def __init__(
        self,
        sink: Sink,
        stats: Stats,
        *,
        queue_size: int = 200_000,
        batch_size: int = 1000,
        linger_ms: int = 0,
    ) -> None:
        self.sink = sink
        self.stats = stats
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.linger = linger_ms / 1000
        self.queue: deque[Record] = deque()
        self.in_flight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._workers: list[asyncio.Task[None]] = []
        self._tags = {"sink": sink.name}
        self._unlogged_drops = 0
        self._next_drop_log = 0.0
        stats.gauge("sink.queue_depth", lambda: len(self.queue), self._tags)

    def submit(self, records: Sequence[Record]) -> None:
        """Queue records without waiting; beyond the bound they are counted and logged."""
        if not records:
            return
        room = self.queue_size - len(self.queue)
        if len(records) > room:
            dropped = len(records) - max(room, 0)
            self.stats.incr("sink.dropped", dropped, {**self._tags, "reason": "queue_full"})
            self._unlogged_drops += dropped
            now = time.monotonic()
            # Logging every drop would add to the very overload that causes it: say it at
            # most once a second, with the count since the last line.
            if now >= self._next_drop_log:
                log.warning(
                    "sink %s: queue full, %d records dropped", self.sink.name, self._unlogged_drops
                )
                self._unlogged_drops = 0
                self._next_drop_log = now + DROP_LOG_INTERVAL
            records = records[: max(room, 0)]
            if not records:
                return
        self.stats.incr("sink.received", len(records), self._tags)
        self.queue.extend(records)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        for i in range(max(1, self.sink.concurrency)):
            self._workers.append(
                asyncio.create_task(self._work(), name=f"sink-{self.sink.name}-{i}")
            )

    def _take(self) -> list[Record]:
        queue = self.queue
        count = min(self.batch_size, len(queue))
        return [queue.popleft() for _ in range(count)]

    async def _work(self) -> None:
        while True:
            if not self.queue:
                if self.in_flight == 0:
                    self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger and len(self.queue) < self.batch_size and not self._closing:
                # Let a batch fill up so a quiet period costs one write, not many.
                await asyncio.sleep(self.linger)
            batch = self._take()
            if not batch:
                continue
            self.in_flight += 1
            try:
                await self.sink.send(batch)
                self.stats.incr("sink.sent", len(batch), self._tags)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.incr("sink.failed", len(batch), {**self._tags, "reason": "error"})
                log.exception("sink %s: send failed for %d records", self.sink.name, len(batch))
            finally:
                self.in_flight -= 1

    async def flush(self) -> None:
        """Wait until everything queued so far has been handed to the sink."""
        while self.queue or self.in_flight:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    async def close(self, timeout: float) -> None:
        """Drain the queue (within `timeout`), stop the workers, close the sink."""
        self._closing = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._workers)
        except TimeoutError:
            left = len(self.queue)
            self.stats.incr("sink.dropped", left, {**self._tags, "reason": "shutdown_timeout"})
            log.error("sink %s: %d records not delivered by shutdown", self.sink.name, left)
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        await self.sink.aclose()


class Dispatcher:
    """Hands each batch's records to every sink that takes their kind."""

    def __init__(self, runners: Sequence[SinkRunner]) -> None:
        self.runners = list(runners)
        self._by_kind = {
            kind: [r for r in self.runners if kind in r.sink.kinds]
            for kind in ("amplitude", "flow", "vwo")
        }

    def submit(self, batch: RecordBatch) -> None:
        for kind, records in (
            ("flow", batch.flow),
            ("amplitude", batch.amplitude),
            ("vwo", batch.vwo),
        ):
            if records:
                for runner in self._by_kind[kind]:
                    runner.submit(records)

    async def start(self) -> None:
        for runner in self.runners:
            await runner.sink.start()
            runner.start()

    async def flush(self) -> None:
        await asyncio.gather(*(r.flush() for r in self.runners))

    async def close(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(r.close(timeout) for r in reversed(self.runners)))
