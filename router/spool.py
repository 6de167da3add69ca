"""A sink's on-disk backlog: chunks of records in arrival order, in SQLite (WAL).

One row holds one chunk (the records one request produced for one sink), so the
cost of spooling grows with requests, not with events. Writes are group-committed:
many chunks, one transaction, one fsync at most.

A row is either a copy of a chunk the runner still holds in memory (write-behind:
`spilled = 0`) or the only copy (`spilled = 1`), which the runner reads back in id
order. After a restart every row is the only copy.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import aiosqlite
import msgspec

from .records import AmplitudeEvent, FlowEvent, Record, VwoConversion

log = logging.getLogger(__name__)


class Chunk(msgspec.Struct, array_like=True, omit_defaults=True):
    amplitude: list[AmplitudeEvent] = msgspec.field(default_factory=list)
    flow: list[FlowEvent] = msgspec.field(default_factory=list)
    vwo: list[VwoConversion] = msgspec.field(default_factory=list)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Chunk)


def encode_records(records: Sequence[Record]) -> bytes:
    chunk = Chunk()
    for record in records:
        if isinstance(record, AmplitudeEvent):
            chunk.amplitude.append(record)
        elif isinstance(record, FlowEvent):
            chunk.flow.append(record)
        else:
            chunk.vwo.append(record)
    return _encoder.encode(chunk)


def decode_records(blob: bytes) -> list[Record]:
    chunk = _decoder.decode(blob)
    return [*chunk.amplitude, *chunk.flow, *chunk.vwo]


class SpoolFull(Exception):
    """The spool has reached max_bytes: refuse new work rather than drop it."""


class Spool:
    """Append, read in order, delete when delivered; survives restarts and kill -9."""

    def __init__(self, path: Path, *, max_bytes: int, fsync: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.size_bytes = 0
        self.rows = 0
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB,"
            " spilled INTEGER NOT NULL DEFAULT 0)"
        )
        # Memory did not survive the last run: every row is now the only copy.
        await db.execute("UPDATE chunks SET spilled = 1 WHERE spilled = 0")
        async with db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM chunks") as c:
            row = await c.fetchone()
        assert row is not None
        self.rows, self.size_bytes = int(row[0]), int(row[1])
        self._db = db
        if self.rows:
            log.info("spool %s: %d chunks (%d bytes) to replay", self.path, *row)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def full(self) -> bool:
        return self.size_bytes >= self.max_bytes

    async def append(self, blobs: Sequence[bytes], *, spilled: bool = False) -> list[int]:
        """Write chunks in one transaction; their row ids, in order."""
        ids, _ = await self.commit([(blob, spilled) for blob in blobs], ())
        return ids

    async def commit(
        self, chunks: Sequence[tuple[bytes, bool]], delete: Iterable[int]
    ) -> tuple[list[int], int]:
        """One transaction: insert (body, spilled) chunks and delete rows by id.

        Returns the new row ids in order and how many rows were deleted.
        """
        wanted = list(delete)
        if not chunks and not wanted:
            return [], 0
        assert self._db is not None
        db = self._db
        async with self._lock:
            ids: list[int] = []
            freed = gone = 0
            try:
                await db.execute("BEGIN IMMEDIATE")
                for blob, spilled in chunks:
                    cursor = await db.execute(
                        "INSERT INTO chunks (body, spilled) VALUES (?, ?)", (blob, int(spilled))
                    )
                    assert cursor.lastrowid is not None
                    ids.append(cursor.lastrowid)
                for start in range(0, len(wanted), 500):
                    part = wanted[start : start + 500]
                    marks = ",".join("?" * len(part))
                    async with db.execute(
                        f"SELECT coalesce(sum(length(body)), 0), count(*) FROM chunks "
                        f"WHERE id IN ({marks})",
                        part,
                    ) as cursor:
                        row = await cursor.fetchone()
                    assert row is not None
                    freed += int(row[0])
                    gone += int(row[1])
                    await db.execute(f"DELETE FROM chunks WHERE id IN ({marks})", part)
                await db.execute("COMMIT")
            except (sqlite3.Error, OSError):
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
            self.rows += len(ids) - gone
            self.size_bytes += sum(len(blob) for blob, _ in chunks) - freed
            return ids, gone

    async def read(
        self, limit: int, after: int = 0, *, spilled_only: bool = False
    ) -> list[tuple[int, bytes]]:
        """The oldest chunks with id > after (only the disk-only ones if `spilled_only`)."""
        assert self._db is not None
        where = "id > ? AND spilled = 1" if spilled_only else "id > ?"
        async with self._db.execute(
            f"SELECT id, body FROM chunks WHERE {where} ORDER BY id LIMIT ?", (after, limit)
        ) as cursor:
            return [(int(i), bytes(b)) for i, b in await cursor.fetchall()]

    async def delete(self, ids: Iterable[int]) -> None:
        await self.commit((), ids)
