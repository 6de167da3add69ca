"""The sink interface: send a batch of records, close; usable with `async with`."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import ClassVar, Literal, Self

from ..records import Record
from ..stats import Stats

Kind = Literal["amplitude", "flow", "vwo", "activity", "client_metrics"]


class Sink:
    """Base class: a destination for records of some kinds.

    `send` is called by one dispatcher worker at a time per sink unless the sink
    sets `concurrency` higher. A sink that must not lose records handles its own
    retries inside `send`; an exception escaping `send` is counted and logged by
    the dispatcher (and, for a durable sink, dead-lettered as `sink_error`).

    A `durable` sink gets a disk spool from the dispatcher: what it has not
    finished sending survives a restart and is sent again, so its destination
    must deduplicate (Amplitude's insert_id).
    """

    kinds: ClassVar[frozenset[Kind]] = frozenset()
    durable: ClassVar[bool] = False
    concurrency: int = 1
    # True: the sink counts `sink.sent` / `sink.dead_lettered` itself, per record,
    # because a returning `send` does not mean every record was delivered.
    reports_outcomes: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name
        # Replaced by the dispatcher's Stats when the sink is put behind a SinkRunner.
        self.stats = Stats()

    async def start(self) -> None:
        """Open connections, files and the like."""

    async def send(self, records: Sequence[Record]) -> None:
        """Deliver one batch."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Flush and release everything."""

    async def healthy(self) -> bool:
        """For `/__heartbeat__`: can this sink deliver right now?"""
        return True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
