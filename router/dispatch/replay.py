"""`metrics-router dlq replay`: send dead letters again through their sink's Delivery.

Replay works on a snapshot: the rows up to the highest id when it starts. A record
the destination refuses again keeps its row (nothing new is added, so the run ends);
what a sink drops of something else (an Identify call) is dead-lettered as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..deadletter import DeadLetter, DeadLetters
from ..sinks.base import Dropped, Sink
from ..stats import Stats
from .runner import Delivery

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    sent: int = 0
    # Per destination: rows kept because their record cannot be resent, rows the
    # destination refused again, and why a destination's replay stopped.
    skipped: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.refused)


async def replay(
    store: DeadLetters,
    sinks: Mapping[str, Sink],
    destination: str | None = None,
    reason: str | None = None,
    batch_size: int = 500,
    stats: Stats | None = None,
) -> ReplayResult:
    """Send the matching dead letters again, deleting the rows that went."""
    result = _Replay(store, sinks, stats or store.stats)
    upto = await store.last_id()
    after = 0
    while letters := await store.list(destination, reason, batch_size, after, upto):
        after = letters[-1].id
        by_destination: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            by_destination.setdefault(letter.destination, []).append(letter)
        for name, group in by_destination.items():
            await result.replay(name, group)
    return result.result


class _Replay:
    """The replay of one run: a Delivery per destination and what became of each row."""

    def __init__(self, store: DeadLetters, sinks: Mapping[str, Sink], stats: Stats) -> None:
        self.store = store
        self.deliveries = {name: Delivery(sink, stats, store) for name, sink in sinks.items()}
        self.result = ReplayResult()

    async def replay(self, name: str, group: list[DeadLetter]) -> None:
        result = self.result
        if name in result.failed:
            return
        delivery = self.deliveries.get(name)
        if delivery is None:
            result.failed[name] = "no such sink in the configuration"
            return
        rows = {}
        for letter in group:
            record = letter.to_record()
            if record is None:
                result.skipped[name] = result.skipped.get(name, 0) + 1
            else:
                rows[id(record)] = (letter.id, record)
        refused: set[int] = set()

        def retain(dropped: Dropped) -> bool:
            row = rows.get(id(dropped.record))
            if row is None:
                return False
            refused.add(row[0])
            return True

        if not rows:
            return
        error = await delivery.send([record for _, record in rows.values()], retain)
        if error is not None:
            result.failed[name] = f"{type(error).__name__}: {error}"
            log.error("dlq replay: %s stopped: %s", name, result.failed[name])
            return
        if refused:
            result.refused[name] = result.refused.get(name, 0) + len(refused)
        gone = [row for row, _ in rows.values() if row not in refused]
        await self.store.purge(ids=gone)
        result.sent += len(gone)
