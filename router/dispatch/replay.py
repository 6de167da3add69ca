"""`metrics-router dlq replay`: dead letters sent again by a SinkRunner whose buffer is the store.

Replay works on a snapshot: the rows up to the highest id when it starts. Each
destination gets a runner over a `ReplayBuffer` (take = read rows, ack = delete them,
keep = leave them), so replay shares the router's loop and failure path. A record the
destination refuses again keeps its row (`retain`: nothing new is added, so the run
ends); what a sink drops of something else (an Identify call) is dead-lettered as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..records import Record
from ..sinks.base import Dropped, Sink
from ..stats import Stats
from .buffer import SourceBuffer, Ticket
from .deadletter import DeadLetters
from .runner import SinkRunner

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
    result = ReplayResult()
    upto = await store.last_id()
    names = sorted({d for d, _ in await store.counts() if destination in (None, d)})
    for name in names:
        if not await store.list(name, reason, 1, 0, upto):
            continue
        sink = sinks.get(name)
        if sink is None:
            result.failed[name] = "no such sink in the configuration"
            continue
        buffer = ReplayBuffer(store, name, reason, upto, batch_size, result)
        runner = SinkRunner(sink, stats or store.stats, buffer, store)
        runner.start()
        await buffer.drained.wait()
        await runner.stop(5.0)
    return result


class ReplayTicket(Ticket):
    __slots__ = ("rows",)

    def __init__(self, records: list[Record], rows: dict[int, int]) -> None:
        super().__init__(records, [])
        # id(record) -> its row.
        self.rows = rows


class ReplayBuffer(SourceBuffer):
    """One destination's dead-letter rows (up to the snapshot) as a runner's buffer.

    Kept rows stay where they are: the runner must not dead-letter them once more.
    """

    def __init__(
        self,
        store: DeadLetters,
        destination: str,
        reason: str | None,
        upto: int,
        batch_size: int,
        result: ReplayResult,
    ) -> None:
        super().__init__()
        self.store = store
        self.destination = destination
        self.reason = reason
        self.upto = upto
        self.batch_size = batch_size
        self.result = result
        self.drained = asyncio.Event()
        self._after = 0
        self._exhausted = False
        self._in_flight = 0
        self._lock = asyncio.Lock()
        self._refused: set[int] = set()
        self._rows: dict[int, int] = {}

    async def take(self) -> Ticket | None:
        async with self._lock:
            while not self.closing:
                letters = await self.store.list(
                    self.destination, self.reason, self.batch_size, self._after, self.upto
                )
                if not letters:
                    break
                self._after = letters[-1].id
                records: list[Record] = []
                rows: dict[int, int] = {}
                for letter in letters:
                    record = letter.to_record()
                    if record is None:
                        skipped = self.result.skipped
                        skipped[self.destination] = skipped.get(self.destination, 0) + 1
                        continue
                    records.append(record)
                    rows[id(record)] = letter.id
                if records:
                    self._in_flight += 1
                    self._rows.update(rows)
                    return ReplayTicket(records, rows)
            self._exhausted = True
            self._check_drained()
            return None

    def retain(self, dropped: Dropped) -> bool:
        """A record the destination refused again keeps its row."""
        row = self._rows.get(id(dropped.record))
        if row is None:
            return False
        self._refused.add(row)
        return True

    def _settle(self, ticket: Ticket, gone: list[int]) -> None:
        assert isinstance(ticket, ReplayTicket)
        for key in ticket.rows:
            self._rows.pop(key, None)
        self._later(self._purge(gone))

    async def _purge(self, gone: list[int]) -> None:
        try:
            if gone:
                await self.store.purge(ids=gone)
                self.result.sent += len(gone)
        finally:
            self._in_flight -= 1
            self._check_drained()

    def ack(self, ticket: Ticket) -> None:
        assert isinstance(ticket, ReplayTicket)
        refused = [row for row in ticket.rows.values() if row in self._refused]
        if refused:
            counts = self.result.refused
            counts[self.destination] = counts.get(self.destination, 0) + len(refused)
        self._settle(ticket, [row for row in ticket.rows.values() if row not in self._refused])

    def keep(self, ticket: Ticket, error: Exception | None = None) -> None:
        """The sink failed: this destination stops, its rows stay."""
        why = f"{type(error).__name__}: {error}" if error is not None else "failed"
        self.result.failed.setdefault(self.destination, why)
        log.error("dlq replay: %s stopped: %s", self.destination, why)
        self.closing = True
        self._settle(ticket, [])

    def _check_drained(self) -> None:
        if self._exhausted and self._in_flight == 0:
            self.drained.set()
