"""Fan-out: every sink gets its own bounded queue and workers, so none can stall another.

A durable sink's runner also keeps a spool (`router/spool.py`), used in two ways:

- write-behind: every chunk (the records one request produced for this sink) is
  group-committed to disk within `commit_interval_ms` unless it was delivered first,
  and its row is deleted once it is; a kill -9 loses at most the chunks accepted in
  the last interval (none in strict mode, where the 200 waits for the commit);
- spill: past `memory_records` queued records, or while older chunks are on disk
  only, new chunks are written to disk only and read back in order when memory is
  empty, so memory stays bounded however long the destination is down.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Sequence

from .deadletter import DeadLetters
from .records import Record, RecordBatch
from .sinks.base import Sink
from .spool import Spool, decode_records, encode_records
from .stats import Stats

# RecordBatch's lists, in the order a sink taking several kinds gets them.
KINDS = ("flow", "amplitude", "vwo", "activity", "client_metrics")

log = logging.getLogger(__name__)

# Rows read back from the spool at a time; a row holds one request's records.
READ_ROWS = 32
# Encoded disk-only chunks waiting for their commit; beyond it ingest answers 503
# (the disk is slower than the ingest rate) so memory stays bounded.
SPILL_BACKLOG_BYTES = 16 << 20


class SpoolError(Exception):
    """The spool could not be written: strict-mode requests are refused, not acknowledged."""


class _Chunk:
    """The records one request produced for one sink, tracked until all are sent."""

    __slots__ = ("records", "size", "taken", "pending", "row", "done", "keep", "waiter")

    def __init__(self, records: list[Record], row: int | None = None) -> None:
        self.records = records
        self.size = len(records)
        self.taken = 0
        self.pending = 0
        self.row = row
        self.done = False
        # Sending failed and dead-lettering too: leave it in the spool for the next start.
        self.keep = False
        self.waiter: asyncio.Future[None] | None = None


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class SinkRunner:
    """One sink's queue, the workers that feed it batches and, if durable, its spool."""

    def __init__(
        self,
        sink: Sink,
        stats: Stats,
        *,
        queue_size: int = 200_000,
        batch_size: int = 1000,
        linger_ms: int = 0,
        spool: Spool | None = None,
        deadletters: DeadLetters | None = None,
        commit_interval_ms: int = 200,
        memory_records: int = 10_000,
        strict: bool = False,
    ) -> None:
        self.sink = sink
        self.stats = stats
        sink.stats = stats
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.linger = linger_ms / 1000
        self.spool = spool
        self.deadletters = deadletters
        self.commit_interval = commit_interval_ms / 1000
        self.memory_records = memory_records
        self.strict = strict and spool is not None
        self.queue: deque[_Chunk] = deque()
        # Records in `queue` not yet taken by a worker.
        self.queued = 0
        self.in_flight = 0
        # The spool could not be written on the last try (ingest then refuses work).
        self.failing = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._workers: list[asyncio.Task[None]] = []
        self._tags = {"sink": sink.name}
        self._full_logged_at = -1e9
        self._full_unlogged = 0
        # Durable state: what the next commit round writes and deletes.
        self._staged: list[_Chunk] = []
        self._spill: list[tuple[bytes, asyncio.Future[None] | None]] = []
        self._deletes: list[int] = []
        self._spill_bytes = 0
        # Disk-only chunks not yet read back (staged, being committed or on disk).
        self._disk_only = 0
        self._cursor = 0
        self._loading = False
        self._commit_wanted = asyncio.Event()
        self._urgent = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._checkpoints: list[asyncio.Future[None]] = []
        stats.gauge("sink.queue_depth", lambda: self.queued, self._tags)
        if spool is not None:
            stats.gauge("spool.bytes", lambda: spool.size_bytes, self._tags)
            stats.gauge("spool.rows", lambda: spool.rows, self._tags)

    @property
    def full(self) -> bool:
        """True when this sink cannot keep more work: its spool is full or failing."""
        return self.spool is not None and (
            self.spool.full or self.failing or self._spill_bytes >= SPILL_BACKLOG_BYTES
        )

    @property
    def busy(self) -> bool:
        """A sink without a spool whose queue is nearly full: refuse new work, drop none.

        The last tenth of the queue is headroom for batches accepted just before.
        """
        return self.spool is None and self.queued >= self.queue_size - self.queue_size // 10

    def submit(self, records: Sequence[Record]) -> asyncio.Future[None] | None:
        """Queue records without waiting.

        A durable runner never drops them. In strict mode the future it returns
        resolves once they are on disk (or delivered). A non-durable runner drops
        what exceeds its bound, counted and logged.
        """
        if not records:
            return None
        if self.spool is None:
            room = self.queue_size - self.queued
            if len(records) > room:
                dropped = len(records) - max(room, 0)
                self.stats.incr("sink.dropped", dropped, {**self._tags, "reason": "queue_full"})
                self._log_full(dropped)
                records = records[: max(room, 0)]
                if not records:
                    return None
        self.stats.incr("sink.received", len(records), self._tags)
        waiter = asyncio.get_running_loop().create_future() if self.strict else None
        if self.spool is not None and (self._disk_only or self.queued >= self.memory_records):
            # Spill: older work is on disk or memory is at its bound; keep order, not records.
            blob = encode_records(records)
            self._spill.append((blob, waiter))
            self._spill_bytes += len(blob)
            self._disk_only += 1
            self._urgent.set()
            self._commit_wanted.set()
            return waiter
        chunk = _Chunk(list(records))
        chunk.waiter = waiter
        self.queue.append(chunk)
        self.queued += chunk.size
        if self.spool is not None:
            self._staged.append(chunk)
            self._commit_wanted.set()
            if waiter is not None:
                self._urgent.set()
        self._idle.clear()
        self._wake.set()
        return waiter

    async def open(self) -> None:
        """Open the spool; whatever it holds is sent before new work."""
        if self.spool is not None:
            await self.spool.open()
            self._disk_only = self.spool.rows
            if self._disk_only:
                self._idle.clear()

    def _log_full(self, dropped: int) -> None:
        # At most one line a second: a dead destination must not turn ingest into logging.
        self._full_unlogged += dropped
        now = time.monotonic()
        if now - self._full_logged_at >= 1.0:
            log.warning(
                "sink %s: queue full, %d records dropped", self.sink.name, self._full_unlogged
            )
            self._full_logged_at = now
            self._full_unlogged = 0

    def start(self) -> None:
        for i in range(max(1, self.sink.concurrency)):
            self._workers.append(
                asyncio.create_task(self._work(), name=f"sink-{self.sink.name}-{i}")
            )
        if self.spool is not None:
            self._committer = asyncio.create_task(
                self._commit_loop(), name=f"spool-{self.sink.name}"
            )

    def _take(self) -> tuple[list[Record], list[tuple[_Chunk, int]]]:
        """Up to `batch_size` records from the head of the queue, and the chunks they are from."""
        batch: list[Record] = []
        parts: list[tuple[_Chunk, int]] = []
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
        return batch, parts

    async def _work(self) -> None:
        while True:
            if not self.queue:
                # Cleared before any await, so a wake-up during `_load` is not missed.
                self._wake.clear()
                if self._disk_only and not self._closing and not self._loading:
                    if await self._load():
                        continue
                if self._closing:
                    return
                if self.in_flight == 0 and not self._disk_only:
                    self._idle.set()
                await self._wake.wait()
                continue
            if self.linger and self.queued < self.batch_size and not self._closing:
                # Let a batch fill up so a quiet period costs one write, not many.
                await asyncio.sleep(self.linger)
            batch, parts = self._take()
            if not batch:
                continue
            keep = False
            self.in_flight += 1
            try:
                await self.sink.send(batch)
                if not self.sink.reports_outcomes:
                    self.stats.incr("sink.sent", len(batch), self._tags)
            except asyncio.CancelledError:
                # Unfinished: its chunks stay staged or in the spool.
                raise
            except Exception as exc:
                self.stats.incr("sink.failed", len(batch), {**self._tags, "reason": "error"})
                log.exception("sink %s: send failed for %d records", self.sink.name, len(batch))
                keep = not await self._dead_letter(batch, exc)
            finally:
                self.in_flight -= 1
            self._settle(parts, keep)

    async def _dead_letter(self, batch: list[Record], exc: Exception) -> bool:
        """Keep what a durable sink gave up on; False if even that failed."""
        if self.spool is None or self.deadletters is None:
            return True
        try:
            await self.deadletters.add(
                self.sink.name, "sink_error", batch, detail=f"{type(exc).__name__}: {exc}"
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "sink %s: could not dead-letter %d records; they stay in the spool",
                self.sink.name,
                len(batch),
            )
            return False
        return True

    def _settle(self, parts: list[tuple[_Chunk, int]], keep: bool) -> None:
        for chunk, count in parts:
            chunk.pending -= count
            chunk.keep = chunk.keep or keep
            if chunk.pending == 0 and chunk.taken == chunk.size:
                self._finish(chunk)

    def _finish(self, chunk: _Chunk) -> None:
        """Every record of the chunk was sent (or dead-lettered): forget it."""
        chunk.done = True
        _resolve(chunk.waiter)
        if chunk.keep:
            return  # written by the next commit if it is not yet, never deleted
        chunk.records = []
        if chunk.row is not None:
            self._deletes.append(chunk.row)
            self._commit_wanted.set()

    async def _load(self) -> bool:
        """Read the next disk-only chunks into the queue; False if none are committed yet."""
        assert self.spool is not None
        self._loading = True
        try:
            rows = await self.spool.read(READ_ROWS, self._cursor, spilled_only=True)
        except (sqlite3.Error, OSError):
            log.exception("spool %s: read failed", self.spool.path)
            self.stats.incr("spool.error", 1, {**self._tags, "op": "read"})
            await asyncio.sleep(self.commit_interval)
            return True
        finally:
            self._loading = False
        if not rows:
            return False
        self._cursor = rows[-1][0]
        self._disk_only -= len(rows)
        for row, blob in rows:
            try:
                records = decode_records(blob)
            except Exception:
                log.exception("spool %s: row %d is unreadable; deleted", self.spool.path, row)
                self.stats.incr("spool.corrupt", 1, self._tags)
                records = []
            chunk = _Chunk(records, row)
            if records:
                self.queue.append(chunk)
                self.queued += chunk.size
            else:
                self._finish(chunk)
        self.stats.incr("spool.replayed", len(rows), self._tags)
        self._wake.set()
        return True

    async def _commit_loop(self) -> None:
        while True:
            if not (self._staged or self._spill or self._deletes or self._checkpoints):
                if self._closing:
                    return
                self._commit_wanted.clear()
                await self._commit_wanted.wait()
                continue
            if not self._urgent.is_set() and not self._closing:
                # Group commit: gather what arrives in the interval into one transaction.
                try:
                    async with asyncio.timeout(self.commit_interval):
                        await self._urgent.wait()
                except TimeoutError:
                    pass
            self._urgent.clear()
            checkpoints, self._checkpoints = self._checkpoints, []
            ok = await self._commit_round()
            for waiter in checkpoints:
                if not waiter.done():
                    if ok:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(SpoolError("spool write failed"))
            if not ok:
                await asyncio.sleep(self.commit_interval)

    async def checkpoint(self) -> None:
        """Commit now: every chunk submitted so far and not yet delivered is then on disk."""
        if self._committer is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._checkpoints.append(waiter)
        self._commit_wanted.set()
        self._urgent.set()
        await waiter

    async def _commit_round(self) -> bool:
        """Write what is staged and not yet delivered, delete what was: one transaction."""
        assert self.spool is not None
        staged, self._staged = self._staged, []
        spill, self._spill = self._spill, []
        deletes, self._deletes = self._deletes, []
        writes = [c for c in staged if not c.done or c.keep]
        items = [(encode_records(c.records), False) for c in writes]
        items.extend((blob, True) for blob, _ in spill)
        try:
            ids, gone = await self.spool.commit(items, deletes)
        except (sqlite3.Error, OSError) as exc:
            self._staged[:0] = writes
            self._spill[:0] = spill
            self._deletes[:0] = deletes
            self.stats.incr("spool.error", 1, {**self._tags, "op": "write"})
            if not self.failing:
                log.error("spool %s: write failed (%s); refusing new work", self.spool.path, exc)
            self.failing = True
            # Strict-mode requests waiting on this are answered 503, not 200.
            for waiter in [c.waiter for c in writes] + [w for _, w in spill]:
                if waiter is not None and not waiter.done():
                    waiter.set_exception(SpoolError(str(exc)))
            return False
        self._spill_bytes -= sum(len(blob) for blob, _ in spill)
        if self.failing:
            log.info("spool %s: writing again", self.spool.path)
        self.failing = False
        for chunk, row in zip(writes, ids, strict=False):
            chunk.row = row
            if chunk.done and not chunk.keep:
                self._deletes.append(row)  # delivered while it was being written
            _resolve(chunk.waiter)
        for _, waiter in spill:
            _resolve(waiter)
        if spill:
            self._wake.set()
        if items:
            self.stats.incr("spool.written", len(items), self._tags)
        if gone:
            self.stats.incr("spool.deleted", gone, self._tags)
        return True

    async def flush(self) -> None:
        """Wait until everything queued so far (and spooled) has been handed to the sink."""
        while self.queue or self.in_flight or self._disk_only:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    async def close(self, timeout: float) -> None:
        """Drain the queue (within `timeout`), stop the workers, close the sink.

        A durable runner then writes every chunk not yet delivered to its spool, to be
        sent at the next start; a non-durable one counts what it drops.
        """
        self._closing = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._workers)
        except TimeoutError:
            left = self.queued
            if self.spool is None:
                self.stats.incr("sink.dropped", left, {**self._tags, "reason": "shutdown_timeout"})
                log.error("sink %s: %d records not delivered by shutdown", self.sink.name, left)
            else:
                log.warning(
                    "sink %s: shutdown deadline reached; undelivered records stay in the spool",
                    self.sink.name,
                )
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        if self._committer is not None and self.spool is not None:
            self._commit_wanted.set()
            self._urgent.set()
            try:
                async with asyncio.timeout(max(timeout, 5.0)):
                    await self._committer
            except TimeoutError:
                lost = sum(1 for c in self._staged if not c.done) + len(self._spill)
                log.error("spool %s: %d chunks could not be written", self.spool.path, lost)
                self.stats.incr("sink.dropped", lost, {**self._tags, "reason": "spool_error"})
                self._committer.cancel()
                await asyncio.gather(self._committer, return_exceptions=True)
            if self.spool.rows:
                log.info(
                    "spool %s: %d chunks kept for the next start", self.spool.path, self.spool.rows
                )
            await self.spool.close()
        elif self.spool is not None:
            await self.spool.close()  # opened, never started: a later sink failed to start
        await self.sink.aclose()


class Dispatcher:
    """Hands each batch's records to every sink that takes their kind."""

    def __init__(self, runners: Sequence[SinkRunner]) -> None:
        self.runners = list(runners)
        self.durable = [r for r in self.runners if r.spool is not None]
        self.volatile = [r for r in self.runners if r.spool is None]
        self._plans = [
            (r, [kind for kind in KINDS if kind in r.sink.kinds])
            for r in self.runners
            if r.sink.kinds
        ]

    @property
    def refusal(self) -> str | None:
        """Why ingest must answer 503 now (`spool_full`, `sink_busy`), or None."""
        if any(r.full for r in self.durable):
            return "spool_full"
        if any(r.busy for r in self.volatile):
            return "sink_busy"
        return None

    def submit(self, batch: RecordBatch) -> list[asyncio.Future[None]]:
        """Queue a batch; in strict mode, the futures that resolve once it is on disk.

        Each sink gets one chunk per batch (all the kinds it takes), so a spooled
        request costs one row.
        """
        waiters: list[asyncio.Future[None]] = []
        for runner, kinds in self._plans:
            if len(kinds) == 1:
                records: Sequence[Record] = getattr(batch, kinds[0])
            else:
                records = [r for kind in kinds for r in getattr(batch, kind)]
            if records:
                waiter = runner.submit(records)
                if waiter is not None:
                    waiters.append(waiter)
        return waiters

    async def start(self) -> None:
        """Start every runner in order; if one fails, close those already started."""
        started: list[SinkRunner] = []
        try:
            for runner in self.runners:
                await runner.open()
                started.append(runner)
                await runner.sink.start()
                runner.start()
        except BaseException:
            await asyncio.gather(*(r.close(5.0) for r in reversed(started)), return_exceptions=True)
            raise

    async def flush(self) -> None:
        await asyncio.gather(*(r.flush() for r in self.runners))

    async def close(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(r.close(timeout) for r in reversed(self.runners)))
