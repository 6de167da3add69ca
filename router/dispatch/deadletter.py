"""Dead letters: records a destination refused for good or never took, kept with a reason.

One SQLite row per record: destination (the sink's name), reason, time, its kind
(`records.kind_of`, or "raw"), the record as JSON in its pre-sink form (so a replay
through the sink hashes ids exactly once; JSON so `sqlite3` shows it as it is) and an
optional detail. `metrics-router dlq` lists, shows, replays and purges them. The
counting and logging of dead letters is the runner's (`dispatch/runner.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite
import msgspec

from ..records import TYPES, Record, kind_of
from ..stats import Stats

_encoder = msgspec.json.Encoder()


class DeadLetter(msgspec.Struct, kw_only=True):
    id: int
    destination: str
    reason: str
    # Milliseconds since the epoch.
    time: int
    # "amplitude", "flow", "vwo" (replayable) or "raw" (anything else a sink handed us).
    kind: str
    record: Any
    detail: str | None = None

    def to_record(self) -> Record | None:
        """The record as the pipeline built it, or None if it is not one we can resend."""
        tp = next((t for kind, t in TYPES.items() if kind == self.kind), None)
        if tp is None:
            return None
        try:
            record: Record = msgspec.convert(self.record, tp)
            return record
        except msgspec.ValidationError:
            return None


def _where(
    destination: str | None, reason: str | None, ids: Sequence[int] | None = None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if destination is not None:
        clauses.append("destination = ?")
        args.append(destination)
    if reason is not None:
        clauses.append("reason = ?")
        args.append(reason)
    if ids is not None:
        clauses.append(f"id IN ({','.join('?' * len(ids))})")
        args.extend(ids)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


_COLUMNS = "id, destination, reason, time, kind, record, detail"


def _letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        id=int(row[0]),
        destination=row[1],
        reason=row[2],
        time=int(row[3]),
        kind=row[4],
        record=msgspec.json.decode(row[5]),
        detail=row[6],
    )


class DeadLetters:
    """The dead-letter store. Opens its database on first use; safe to share between sinks."""

    def __init__(self, path: str | Path, stats: Stats | None = None) -> None:
        self.path = Path(path)
        self.stats = stats or Stats()
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> aiosqlite.Connection:
        async with self._lock:
            if self._db is None:
                await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
                db = await aiosqlite.connect(self.path, isolation_level=None)
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA busy_timeout=5000")
                await db.execute(
                    "CREATE TABLE IF NOT EXISTS dead_letters ("
                    " id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL,"
                    " reason TEXT NOT NULL, time INTEGER NOT NULL, kind TEXT NOT NULL,"
                    " record TEXT NOT NULL, detail TEXT)"
                )
                await db.execute(
                    "CREATE INDEX IF NOT EXISTS dead_letters_by_destination"
                    " ON dead_letters (destination, reason)"
                )
                self._db = db
            return self._db

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def add(
        self,
        destination: str,
        reason: str,
        records: Iterable[Record | Any],
        detail: str | None = None,
    ) -> int:
        """Store records `destination` will never take, with why; how many were stored."""
        now = int(time.time() * 1000)
        rows = [
            (
                destination,
                reason,
                now,
                kind_of(r) or "raw",
                _encoder.encode(r).decode(),
                detail,
            )
            for r in records
        ]
        if not rows:
            return 0
        db = self._db or await self.open()
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany(
                "INSERT INTO dead_letters (destination, reason, time, kind, record, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            await db.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some errors (SQLITE_FULL).
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        self.stats.incr("dlq.added", len(rows), {"destination": destination, "reason": reason})
        return len(rows)

    async def last_id(self) -> int:
        """The highest id so far: a replay works on the rows up to it."""
        db = self._db or await self.open()
        async with db.execute("SELECT coalesce(max(id), 0) FROM dead_letters") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def list(
        self,
        destination: str | None = None,
        reason: str | None = None,
        limit: int = 100,
        after: int = 0,
        upto: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters in id order, from `after` on (up to id `upto`), at most `limit`."""
        db = self._db or await self.open()
        where, args = _where(destination, reason)
        where = f"{where} AND id > ?" if where else " WHERE id > ?"
        args.append(after)
        if upto is not None:
            where += " AND id <= ?"
            args.append(upto)
        async with db.execute(
            f"SELECT {_COLUMNS} FROM dead_letters{where} ORDER BY id LIMIT ?",
            [*args, limit],
        ) as cursor:
            return [_letter(row) for row in await cursor.fetchall()]

    async def get(self, id: int) -> DeadLetter | None:
        db = self._db or await self.open()
        async with db.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ?", (id,)) as cursor:
            row = await cursor.fetchone()
        return _letter(row) if row is not None else None

    async def counts(self) -> dict[tuple[str, str], int]:
        """How many dead letters per (destination, reason)."""
        db = self._db or await self.open()
        async with db.execute(
            "SELECT destination, reason, count(*) FROM dead_letters GROUP BY destination, reason"
        ) as cursor:
            return {(d, r): int(n) for d, r, n in await cursor.fetchall()}

    async def purge(
        self,
        destination: str | None = None,
        reason: str | None = None,
        ids: Sequence[int] | None = None,
    ) -> int:
        """Delete the dead letters matching every filter given (all of them if none)."""
        db = self._db or await self.open()
        total = 0
        batches = [ids[i : i + 500] for i in range(0, len(ids), 500)] if ids is not None else [None]
        for part in batches:
            where, args = _where(destination, reason, part)
            cursor = await db.execute(f"DELETE FROM dead_letters{where}", args)
            total += max(cursor.rowcount, 0)
        return total
