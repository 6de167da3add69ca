"""A sink's on-disk backlog: chunks of records in arrival order, in SQLite (WAL).

One row holds one chunk (the records one submit, a request's or a loop turn's, produced
for one sink, encoded by `records.encode_batch`), so the
cost of spooling grows with requests, not with events. Writes are group-committed:
many chunks, one transaction, one fsync at most.

A row is either a copy of a chunk the runner still holds in memory (write-behind:
`spilled = 0`) or the only copy (`spilled = 1`), which the runner reads back in id
order. After a restart every row is the only copy.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_disk_full(exc: BaseException) -> bool:
    """Did a write fail for want of space (ENOSPC, or SQLite's SQLITE_FULL)?"""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


# Rows a statement, largest first: a round's rows go in statements of these sizes only.
# sqlite3 caches a prepared statement per SQL text (128 of them), and one for a few
# hundred rows takes about a megabyte: with a statement per row count, a spool whose
# rounds varied in size held hundreds of MB of them (RSS grew for minutes with a
# destination down). 256 rows bind 512 values, under every SQLite's limit.
STATEMENT_ROWS = (256, 64, 16, 4, 1)


def statement_slices(count: int) -> list[tuple[int, int]]:
    """[start, end) slices of `count` rows, each of a size in STATEMENT_ROWS."""
    slices = []
    start = 0
    for size in STATEMENT_ROWS:
        while count - start >= size:
            slices.append((start, start + size))
            start += size
    return slices


@lru_cache(maxsize=len(STATEMENT_ROWS))
def _insert_sql(rows: int) -> str:
    return "INSERT INTO chunks (body, spilled) VALUES " + ",".join(["(?, ?)"] * rows)


@lru_cache(maxsize=len(STATEMENT_ROWS))
def _measure_sql(rows: int) -> str:
    marks = ",".join("?" * rows)
    return f"SELECT coalesce(sum(length(body)), 0), count(*) FROM chunks WHERE id IN ({marks})"


@lru_cache(maxsize=len(STATEMENT_ROWS))
def _delete_sql(rows: int) -> str:
    return f"DELETE FROM chunks WHERE id IN ({','.join('?' * rows)})"


class Spool:
    """Append, read in order, delete when delivered; survives restarts and kill -9.

    All database work runs on one thread of its own, one hop per call: a commit
    round costs one round trip from the event loop however many chunks it holds,
    so the spool keeps up with ingest even when the loop is busy.
    """

    def __init__(self, path: Path, *, max_bytes: int, fsync: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.size_bytes = 0
        self.rows = 0
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> tuple[int, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB,"
            " spilled INTEGER NOT NULL DEFAULT 0)"
        )
        # Memory did not survive the last run: every row is now the only copy.
        db.execute("UPDATE chunks SET spilled = 1 WHERE spilled = 0")
        rows, size = db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM chunks"
        ).fetchone()
        self._db = db
        return int(rows), int(size)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"spool-{self.path.stem}")
        self.rows, self.size_bytes = await self._run(self._open)
        if self.rows:
            log.info(
                "spool %s: %d chunks (%d bytes) to replay", self.path, self.rows, self.size_bytes
            )

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=False)
        self._executor = None

    @property
    def full(self) -> bool:
        return self.size_bytes >= self.max_bytes

    def _commit(
        self, chunks: Sequence[tuple[bytes, bool]], wanted: list[int]
    ) -> tuple[list[int], int, int]:
        db = self._db
        assert db is not None
        freed = gone = 0
        ids: list[int] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            # Many rows a statement: the thread then needs the GIL a few times per round,
            # not once per row, which matters when the event loop is busy.
            for start, end in statement_slices(len(chunks)):
                batch = chunks[start:end]
                cursor = db.execute(
                    _insert_sql(len(batch)),
                    [value for blob, spilled in batch for value in (blob, int(spilled))],
                )
                # One writer (BEGIN IMMEDIATE), one statement: the ids are consecutive.
                last = cursor.lastrowid
                assert last is not None
                ids.extend(range(last - len(batch) + 1, last + 1))
            for start, end in statement_slices(len(wanted)):
                part = wanted[start:end]
                size, count = db.execute(_measure_sql(len(part)), part).fetchone()
                freed += int(size)
                gone += int(count)
                db.execute(_delete_sql(len(part)), part)
            db.execute("COMMIT")
        except (sqlite3.Error, OSError):
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return ids, gone, freed

    async def commit(
        self, chunks: Sequence[tuple[bytes, bool]], delete: Iterable[int]
    ) -> tuple[list[int], int]:
        """One transaction: insert (body, spilled) chunks and delete rows by id.

        Returns the new row ids in order and how many rows were deleted.
        """
        wanted = list(delete)
        if not chunks and not wanted:
            return [], 0
        ids, gone, freed = await self._run(self._commit, chunks, wanted)
        self.rows += len(ids) - gone
        self.size_bytes += sum(len(blob) for blob, _ in chunks) - freed
        return ids, gone

    def _read(self, limit: int, after: int, spilled_only: bool) -> list[tuple[int, bytes]]:
        assert self._db is not None
        where = "id > ? AND spilled = 1" if spilled_only else "id > ?"
        rows = self._db.execute(
            f"SELECT id, body FROM chunks WHERE {where} ORDER BY id LIMIT ?", (after, limit)
        ).fetchall()
        return [(int(i), bytes(b)) for i, b in rows]

    async def read(
        self, limit: int, after: int = 0, *, spilled_only: bool = False
    ) -> list[tuple[int, bytes]]:
        """The oldest chunks with id > after (only the disk-only ones if `spilled_only`)."""
        return await self._run(self._read, limit, after, spilled_only)
