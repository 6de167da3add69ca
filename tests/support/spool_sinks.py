"""In-memory test sinks whose destination is down until a test lets it up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from router.records import AmplitudeEvent, FlowEvent, Record, VwoConversion
from router.sinks.memory import MemorySink


def events(start: int, count: int) -> list[Record]:
    """`count` flow events whose times are start, start + 1, ..."""
    return [
        FlowEvent(event=f"e{i}", flow_id="f" * 32, flow_time=i, time=i)
        for i in range(start, start + count)
    ]


def times(records: Sequence[Record]) -> list[int]:
    return [r.time for r in records if isinstance(r, AmplitudeEvent | FlowEvent | VwoConversion)]


class GatedSink(MemorySink):
    """A durable in-memory sink whose destination is down while `up` is clear.

    Like a delivery sink, `send` returns only once the batch is delivered: it waits
    for `up`. `fail_next` makes the next sends raise (a sink giving up).
    """

    durable: ClassVar[bool] = True

    def __init__(self, name: str = "gated", up: bool = True) -> None:
        super().__init__(name)
        self.up = asyncio.Event()
        if up:
            self.up.set()
        self.fail_next = 0
        self.attempts = 0
        self.sending = asyncio.Event()

    async def send(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        self.sending.set()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("destination refused the batch")
        await self.up.wait()
        await super().send(records)


class VolatileGatedSink(GatedSink):
    """The same without a spool: what it is given lives in its runner's memory only."""

    durable: ClassVar[bool] = False
