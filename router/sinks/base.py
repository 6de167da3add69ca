"""The sink interface: send a batch of records, close; usable with `async with`."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

from ..records import Kind, Record
from ..stats import Stats

__all__ = ["Dropped", "Kind", "Sink"]


class Dropped(NamedTuple):
    """A record (or anything a sink derived from one) that will not be delivered, and why.

    The runner counts and dead-letters it; `kind` files it apart from the sink's
    records (Amplitude's Identify calls: destination `amplitude-identify`); `keep`
    False means counted but not dead-lettered (VWO's "event not found").
    """

    reason: str
    record: Any
    kind: str | None = None
    keep: bool = True


class Sink:
    """Base class: a destination for records of some kinds.

    `send` is called by one runner worker at a time per sink unless the sink sets
    `concurrency` higher. It returns what it dropped (retries go through
    `sinks/retry.py`); the runner alone counts and dead-letters. An exception
    escaping `send` means nothing is known to be delivered: the runner's one
    failure path dead-letters the batch (`sink_error`) or keeps it buffered.

    A `durable` sink gets a disk spool from the dispatcher: what it has not
    finished sending survives a restart and is sent again, so its destination
    must deduplicate (Amplitude's insert_id).
    """

    kinds: ClassVar[frozenset[Kind]] = frozenset()
    durable: ClassVar[bool] = False
    concurrency: int = 1
    # The `kind` tag of this sink's `sink.dead_lettered` counter (None: no tag).
    dead_letter_kind: ClassVar[str | None] = None

    def __init__(self, name: str) -> None:
        self.name = name
        # Replaced by the runner's Stats when the sink is put behind one.
        self.stats = Stats()

    async def start(self) -> None:
        """Open connections, files and the like."""

    async def send(self, records: Sequence[Record]) -> Sequence[Dropped] | None:
        """Deliver one batch; what was dropped (None: nothing)."""
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
