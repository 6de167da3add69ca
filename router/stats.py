"""Counters: one `incr` used everywhere in the router.

Counts are kept exactly in process (for `/__stats__`); exporters such as statsd
receive each call and apply their own sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

Tags = Mapping[str, str]
Key = tuple[str, tuple[tuple[str, str], ...]]


class Exporter(Protocol):
    def incr(self, key: str, amount: int, tags: Tags | None, sample_rate: float | None) -> None:
        """Forward one counter increment."""


class Stats:
    """Process-wide counters with optional exporters."""

    def __init__(self) -> None:
        self.counters: dict[Key, int] = {}
        self.exporters: list[Exporter] = []
        # Read when stats are exported: queue depths and the like.
        self.gauges: dict[Key, Callable[[], float]] = {}

    def incr(
        self,
        key: str,
        amount: int = 1,
        tags: Tags | None = None,
        sample_rate: float | None = None,
    ) -> None:
        """Add `amount` to the counter `key` with `tags`."""
        ident: Key = (key, tuple(sorted(tags.items())) if tags else ())
        self.counters[ident] = self.counters.get(ident, 0) + amount
        for exporter in self.exporters:
            exporter.incr(key, amount, tags, sample_rate)

    def gauge(self, key: str, read: Callable[[], float], tags: Tags | None = None) -> None:
        """Register a value that is read, not counted (e.g. a queue depth)."""
        self.gauges[(key, tuple(sorted(tags.items())) if tags else ())] = read

    def get(self, key: str, **tags: str) -> int:
        """The current value of one counter (tests and /__stats__)."""
        return self.counters.get((key, tuple(sorted(tags.items()))), 0)

    def total(self, key: str) -> int:
        """The sum of a counter over every tag set."""
        return sum(v for (k, _), v in self.counters.items() if k == key)
