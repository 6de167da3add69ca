"""Fan-out: every sink gets its own buffer and workers, so none can stall another.

buffer.py    Buffer interface, MemoryBuffer (bounded queue)
spooled.py   SpoolBuffer: write-behind, spill, replay and the commit loop
runner.py    SinkRunner (take → send → ack) and Delivery, the one failure path
admission.py Admission: ingest waits for room in a busy buffer before answering
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..records import KINDS, Record, RecordBatch
from .admission import Admission
from .buffer import Buffer, MemoryBuffer, Ticket
from .disk import DiskCheck
from .runner import Delivery, SinkRunner
from .spooled import SpoolBuffer

__all__ = [
    "Admission",
    "Buffer",
    "Delivery",
    "DiskCheck",
    "Dispatcher",
    "MemoryBuffer",
    "SinkRunner",
    "SpoolBuffer",
    "Ticket",
]


class Dispatcher:
    """Hands each batch's records to every sink that takes their kind."""

    def __init__(self, runners: Sequence[SinkRunner], disk: DiskCheck | None = None) -> None:
        self.runners = list(runners)
        # Free space under the spool directory (which holds the spools and, by default,
        # the dead-letter store), checked by `/__heartbeat__` when a sink is durable.
        self.disk = disk if any(r.buffer.durable for r in self.runners) else None
        # A durable sink's refusal is named first: it is the one an operator must act on.
        self._by_urgency = sorted(self.runners, key=lambda r: not r.buffer.durable)
        self._plans = [
            (r, [kind for kind in KINDS if kind in r.sink.kinds])
            for r in self.runners
            if r.sink.kinds
        ]
        self.admission = Admission(lambda: self.refusal)
        for runner in self.runners:
            if isinstance(runner.buffer, MemoryBuffer):
                runner.buffer.on_room = self.admission.poke

    @property
    def refusal(self) -> str | None:
        """Why ingest must answer 503 now (`disk_full`, `spool_full`, `sink_busy`...), or None."""
        for runner in self._by_urgency:
            reason = runner.refusal
            if reason is not None:
                return reason
        return None

    def submit(self, batch: RecordBatch) -> list[asyncio.Future[None]]:
        """Queue a batch; in strict mode, the futures that resolve once it is on disk.

        Each sink gets one chunk per batch (all the kinds it takes), so a spooled
        batch (a request's, or a loop turn's: router/ingest.py) costs one row.
        """
        waiters: list[asyncio.Future[None]] = []
        for runner, kinds in self._plans:
            if len(kinds) == 1:
                records: Sequence[Record] = getattr(batch, kinds[0])
            else:
                gathered: list[Record] = []
                for kind in kinds:
                    gathered += getattr(batch, kind)  # one C-level extend per kind
                records = gathered
            if records:
                waiter = runner.submit(records)
                if waiter is not None:
                    waiters.append(waiter)
        # This request's records are in: the next one waiting for room may go.
        self.admission.poke()
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
