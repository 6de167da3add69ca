"""Dead letters: records a destination refused for good or never took, kept with a reason.

One SQLite row per record: destination (the sink's name), reason, time, the record as
JSON in its pre-sink form (so a replay through the sink hashes ids exactly once) and an
optional detail. `metrics-router dlq` lists, shows, replays and purges them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import aiosqlite
import msgspec

from .records import AmplitudeEvent, FlowEvent, Record, VwoConversion
from .stats import Stats

log = logging.getLogger(__name__)

_KINDS: dict[type[Any], str] = {
    AmplitudeEvent: "amplitude",
    FlowEvent: "flow",
    VwoConversion: "vwo",
}
_TYPES: dict[str, type[Record]] = {kind: tp for tp, kind in _KINDS.items()}
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
        tp = _TYPES.get(self.kind)
        if tp is None:
            return None
        try:
            return msgspec.convert(self.record, tp)
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
                _KINDS.get(type(r), "raw"),
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
            await db.execute("ROLLBACK")
            raise
        self.stats.incr("dlq.added", len(rows), {"destination": destination, "reason": reason})
        log.warning("dead letters: %d records for %s (%s)", len(rows), destination, reason)
        return len(rows)

    async def list(
        self,
        destination: str | None = None,
        reason: str | None = None,
        limit: int = 100,
        after: int = 0,
    ) -> list[DeadLetter]:
        """Dead letters in id order, from `after` on, at most `limit`."""
        db = self._db or await self.open()
        where, args = _where(destination, reason)
        where = f"{where} AND id > ?" if where else " WHERE id > ?"
        async with db.execute(
            f"SELECT {_COLUMNS} FROM dead_letters{where} ORDER BY id LIMIT ?",
            [*args, after, limit],
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


async def add_dead_letters(
    store: DeadLetters, destination: str, items: Sequence[tuple[str, Any]]
) -> None:
    """Store (reason, record) pairs, one `add` per reason."""
    by_reason: dict[str, list[Any]] = {}
    for reason, record in items:
        by_reason.setdefault(reason, []).append(record)
    for reason, records in by_reason.items():
        await store.add(destination, reason, records)


class Sender(Protocol):
    """What replay needs of a sink."""

    async def send(self, records: Sequence[Record]) -> None: ...


@dataclass
class ReplayResult:
    sent: int = 0
    # Per destination: records we could not resend, and why.
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


async def replay(
    store: DeadLetters,
    sinks: Mapping[str, Sender],
    destination: str | None = None,
    reason: str | None = None,
    batch_size: int = 500,
) -> ReplayResult:
    """Send matching dead letters again through their destination's sink, deleting what went.

    A record the sink refuses again is dead-lettered again by the sink itself (a new
    row); an exception from `send` stops that destination and keeps its rows.
    """
    result = ReplayResult()
    after = 0
    while True:
        letters = await store.list(destination, reason, limit=batch_size, after=after)
        if not letters:
            return result
        after = letters[-1].id
        by_destination: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            by_destination.setdefault(letter.destination, []).append(letter)
        for name, group in by_destination.items():
            if name in result.failed:
                continue
            sink = sinks.get(name)
            if sink is None:
                result.failed[name] = "no such sink in the configuration"
                continue
            pairs = [(letter, letter.to_record()) for letter in group]
            records = [record for _, record in pairs if record is not None]
            skipped = len(pairs) - len(records)
            if skipped:
                result.skipped[name] = result.skipped.get(name, 0) + skipped
            try:
                if records:
                    await sink.send(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result.failed[name] = f"{type(exc).__name__}: {exc}"
                log.exception("dlq replay: %s failed", name)
                continue
            await store.purge(ids=[letter.id for letter, record in pairs if record is not None])
            result.sent += len(records)
