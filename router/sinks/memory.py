"""A sink that keeps what it is sent, for tests and benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from ..records import ActivityEvent, AmplitudeEvent, ClientMetrics, FlowEvent, Record, VwoConversion
from .base import Kind, Sink


class MemorySink(Sink):
    kinds: ClassVar[frozenset[Kind]] = frozenset(
        {"amplitude", "flow", "vwo", "activity", "client_metrics"}
    )

    def __init__(self, name: str = "memory", keep: bool = True) -> None:
        super().__init__(name)
        self.keep = keep
        self.records: list[Record] = []
        self.count = 0
        self._changed = asyncio.Condition()

    async def send(self, records: Sequence[Record]) -> None:
        self.count += len(records)
        if self.keep:
            self.records.extend(records)
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least `count` records arrived (tests synchronise on this)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.count >= count)

    @property
    def amplitude(self) -> list[AmplitudeEvent]:
        return [r for r in self.records if isinstance(r, AmplitudeEvent)]

    @property
    def flow(self) -> list[FlowEvent]:
        return [r for r in self.records if isinstance(r, FlowEvent)]

    @property
    def vwo(self) -> list[VwoConversion]:
        return [r for r in self.records if isinstance(r, VwoConversion)]

    @property
    def activity(self) -> list[ActivityEvent]:
        return [r for r in self.records if isinstance(r, ActivityEvent)]

    @property
    def client_metrics(self) -> list[ClientMetrics]:
        return [r for r in self.records if isinstance(r, ClientMetrics)]
