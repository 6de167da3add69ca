"""A buffer with a disk spool (`router/dispatch/spool.py`) behind it, for durable sinks.

Two uses of the spool:

- write-behind: every chunk (the records one submit produced for this sink) is
  group-committed to disk within `commit_interval_ms` unless it was delivered first,
  and its row is deleted once it is; a kill -9 loses at most the chunks accepted in
  the last interval (none in strict mode, where the 200 waits for the commit);
- spill: past `memory_records` queued records, or while older chunks are on disk
  only, new chunks are written to disk only and read back in order when memory is
  empty, so memory stays bounded however long the destination is down.

A write that fails (ENOSPC, I/O error) is kept staged and tried again each interval;
meanwhile `refusal` makes ingest answer 503, and it clears by itself once a write
succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence

from ..errors import DiskFull, SpoolError
from ..records import Record, decode_batch, encode_batch
from ..stats import Stats
from .buffer import Chunk, MemoryBuffer, resolve
from .spool import Spool, is_disk_full

log = logging.getLogger(__name__)

# Rows read back from the spool at a time; a row holds one submit's records.
READ_ROWS = 32
# Encoded disk-only chunks waiting for their commit; beyond it ingest answers 503
# (the disk is slower than the ingest rate) so memory stays bounded.
SPILL_BACKLOG_BYTES = 16 << 20


class SpoolBuffer(MemoryBuffer):
    """Never drops: what memory cannot hold goes to disk, and full disk means 503."""

    durable = True

    def __init__(
        self,
        name: str,
        stats: Stats,
        spool: Spool,
        *,
        batch_size: int = 1000,
        linger_ms: int = 0,
        commit_interval_ms: int = 200,
        memory_records: int = 10_000,
        strict: bool = False,
    ) -> None:
        super().__init__(name, stats, batch_size=batch_size, linger_ms=linger_ms)
        self.spool = spool
        self.commit_interval = commit_interval_ms / 1000
        self.memory_records = memory_records
        self.strict = strict
        # Why the last write failed (`disk_full`, `spool_error`), None while writes succeed.
        self.failing: str | None = None
        # What the next commit round writes and deletes.
        self._staged: list[Chunk] = []
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
        stats.gauge("spool.bytes", lambda: spool.size_bytes, self._tags)
        stats.gauge("spool.rows", lambda: spool.rows, self._tags)

    @property
    def refusal(self) -> str | None:
        """`disk_full`, `spool_error` or `spool_full` while this buffer cannot keep more."""
        if self.failing is not None:
            return self.failing
        if self.spool.full or self._spill_bytes >= SPILL_BACKLOG_BYTES:
            return "spool_full"
        return None

    def put(self, records: Sequence[Record]) -> asyncio.Future[None] | None:
        """Queue records; in strict mode the future resolves once they are on disk."""
        if not records:
            return None
        self.stats.incr("sink.received", len(records), self._tags)
        waiter = asyncio.get_running_loop().create_future() if self.strict else None
        if self._disk_only or self.queued >= self.memory_records:
            # Spill: older work is on disk or memory is at its bound; keep order, not records.
            blob = encode_batch(records)
            self._spill.append((blob, waiter))
            self._spill_bytes += len(blob)
            self._disk_only += 1
            # Group-committed like the rest (a commit per request would cost the loop a
            # thread hop and the disk a transaction each), unless a strict request waits
            # or the backlog nears its bound.
            if waiter is not None or self._spill_bytes >= SPILL_BACKLOG_BYTES // 4:
                self._urgent.set()
            self._commit_wanted.set()
            return waiter
        chunk = Chunk(list(records))
        chunk.waiter = waiter
        self._append(chunk)
        self._staged.append(chunk)
        self._commit_wanted.set()
        if waiter is not None:
            self._urgent.set()
        return waiter

    async def open(self) -> None:
        """Open the spool; whatever it holds is sent before new work."""
        await self.spool.open()
        self._disk_only = self.spool.rows
        if self._disk_only:
            self._idle.clear()

    def start(self) -> None:
        self._committer = asyncio.create_task(self._commit_loop(), name=f"spool-{self.name}")

    def _settled(self) -> bool:
        return not self._disk_only

    def _finish(self, chunk: Chunk) -> None:
        chunk.done = True
        resolve(chunk.waiter)
        if chunk.keep:
            return  # written by the next commit if it is not yet, never deleted
        chunk.records = []
        if chunk.row is not None:
            self._deletes.append(chunk.row)
            self._commit_wanted.set()

    async def _refill(self) -> bool:
        if not self._disk_only or self.closing or self._loading:
            return False
        return await self._load()

    async def _load(self) -> bool:
        """Read the next disk-only chunks into the queue; False if none are committed yet."""
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
            if self._spill:
                self._urgent.set()  # the sender waits for what is only staged: write it now
            return False
        self._cursor = rows[-1][0]
        self._disk_only -= len(rows)
        for row, blob in rows:
            try:
                records = decode_batch(blob)
            except Exception:
                log.exception("spool %s: row %d is unreadable; deleted", self.spool.path, row)
                self.stats.incr("spool.corrupt", 1, self._tags)
                records = []
            chunk = Chunk(records, row)
            if records:
                self.queue.append(chunk)
                self.queued += chunk.size
            else:
                self._finish(chunk)
        self.stats.incr("spool.replayed", len(rows), self._tags)
        self._wake.set()
        return True

    # -- the commit loop --------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            if not (self._staged or self._spill or self._deletes or self._checkpoints):
                if self.closing:
                    return
                self._commit_wanted.clear()
                await self._commit_wanted.wait()
                continue
            if not self._urgent.is_set() and not self.closing:
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
                # Tried again each interval, at shutdown too (until close's deadline).
                await asyncio.sleep(self.commit_interval)

    async def checkpoint(self) -> None:
        """Commit now: every chunk put so far and not yet delivered is then on disk."""
        if self._committer is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._checkpoints.append(waiter)
        self._commit_wanted.set()
        self._urgent.set()
        await waiter

    async def _commit_round(self) -> bool:
        """Write what is staged and not yet delivered, delete what was: one transaction."""
        staged, self._staged = self._staged, []
        spill, self._spill = self._spill, []
        deletes, self._deletes = self._deletes, []
        writes = [c for c in staged if not c.done or c.keep]
        try:
            items = [(encode_batch(c.records), False) for c in writes]
            items.extend((blob, True) for blob, _ in spill)
            ids, gone = await self.spool.commit(items, deletes)
        except Exception as exc:  # anything: a dead commit loop would hang strict waiters
            self._staged[:0] = writes
            self._spill[:0] = spill
            self._deletes[:0] = deletes
            self._write_failed(exc, [c.waiter for c in writes] + [w for _, w in spill])
            return False
        self._spill_bytes -= sum(len(blob) for blob, _ in spill)
        if self.failing is not None:
            log.info("spool %s: writing again", self.spool.path)
        self.failing = None
        for chunk, row in zip(writes, ids, strict=False):
            chunk.row = row
            if chunk.done and not chunk.keep:
                self._deletes.append(row)  # delivered while it was being written
            resolve(chunk.waiter)
        for _, waiter in spill:
            resolve(waiter)
        if spill:
            self._wake.set()
        if items:
            self.stats.incr("spool.written", len(items), self._tags)
        if gone:
            self.stats.incr("spool.deleted", gone, self._tags)
        return True

    def _write_failed(self, exc: Exception, waiters: list[asyncio.Future[None] | None]) -> None:
        full = is_disk_full(exc)
        reason = "disk_full" if full else "spool_error"
        self.stats.incr("spool.error", 1, {**self._tags, "op": "write", "reason": reason})
        if self.failing is None:
            log.error("spool %s: write failed (%s); refusing new work", self.spool.path, exc)
        self.failing = reason
        # Strict-mode requests waiting on this are answered 503, not 200.
        error = DiskFull(str(exc)) if full else SpoolError(str(exc))
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    # -- lifetime ---------------------------------------------------------------------------

    def abandon(self) -> None:
        log.warning(
            "sink %s: shutdown deadline reached; undelivered records stay in the spool", self.name
        )

    async def close(self, timeout: float) -> None:
        """Write every chunk not yet delivered, to be sent at the next start; close the file."""
        if self._committer is not None:
            self._commit_wanted.set()
            self._urgent.set()
            try:
                async with asyncio.timeout(max(timeout, 5.0)):
                    await self._committer
            except TimeoutError:
                self._committer.cancel()
                await asyncio.gather(self._committer, return_exceptions=True)
            lost = sum(1 for c in self._staged if not c.done or c.keep) + len(self._spill)
            if lost:
                log.error("spool %s: %d chunks could not be written", self.spool.path, lost)
                self.stats.incr("sink.dropped", lost, {**self._tags, "reason": "spool_error"})
        if self.spool.rows:
            log.info(
                "spool %s: %d chunks kept for the next start", self.spool.path, self.spool.rows
            )
        await self.spool.close()
