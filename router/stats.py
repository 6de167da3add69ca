"""Counters: one `incr` used everywhere in the router.

Counts are kept exactly in process (for `/__stats__`); exporters such as statsd
receive each call with its sample rate (the default one when the caller passes
none) and do their own sampling.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

Tags = Mapping[str, str]
Key = tuple[str, tuple[tuple[str, str], ...]]

log = logging.getLogger(__name__)

_PROM_BAD = re.compile(r"[^a-zA-Z0-9_]")


class Exporter(Protocol):
    def incr(self, key: str, amount: int, tags: Tags | None, sample_rate: float) -> None:
        """Forward one counter increment."""


class Stats:
    """Process-wide counters with optional exporters."""

    def __init__(self, default_sample_rate: float = 1.0) -> None:
        self.counters: dict[Key, int] = {}
        self.exporters: list[Exporter] = []
        self.default_sample_rate = default_sample_rate
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
        if self.exporters:
            rate = self.default_sample_rate if sample_rate is None else sample_rate
            for exporter in self.exporters:
                exporter.incr(key, amount, tags, rate)

    def gauge(self, key: str, read: Callable[[], float], tags: Tags | None = None) -> None:
        """Register a value that is read, not counted (e.g. a queue depth)."""
        self.gauges[(key, tuple(sorted(tags.items())) if tags else ())] = read

    def get(self, key: str, **tags: str) -> int:
        """The current value of one counter (tests and /__stats__)."""
        return self.counters.get((key, tuple(sorted(tags.items()))), 0)

    def total(self, key: str) -> int:
        """The sum of a counter over every tag set."""
        return sum(v for (k, _), v in self.counters.items() if k == key)

    def prometheus(self, prefix: str = "metrics_router") -> str:
        """Every counter and gauge in the Prometheus text exposition format (0.0.4)."""
        lines: list[str] = []
        for kind, suffix, values in (
            ("counter", "_total", {k: float(v) for k, v in self.counters.items()}),
            ("gauge", "", {k: float(read()) for k, read in self.gauges.items()}),
        ):
            by_name: dict[str, list[str]] = {}
            for (key, tags), value in sorted(values.items()):
                name = _prom_name(f"{prefix}_{key}") + suffix
                by_name.setdefault(name, []).append(f"{name}{_prom_labels(tags)} {value:g}")
            for name, samples in by_name.items():
                lines.append(f"# TYPE {name} {kind}")
                lines.extend(samples)
        return "\n".join(lines) + "\n"


def _prom_name(text: str) -> str:
    return _PROM_BAD.sub("_", text)


def _prom_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _prom_labels(tags: tuple[tuple[str, str], ...]) -> str:
    if not tags:
        return ""
    return "{" + ",".join(f'{_prom_name(k)}="{_prom_value(v)}"' for k, v in tags) + "}"


class StatsdExporter:
    """Counters to statsd / DogStatsD over UDP through datadog's DogStatsd client.

    The client is used with its defaults that keep it off the event loop's back: a
    non-blocking UDP socket (socket_timeout=0), no buffering thread, no background
    sender; a full socket buffer drops the packet (counted by the client), never waits.
    """

    def __init__(self, address: str, prefix: str) -> None:
        from datadog.dogstatsd.base import DogStatsd

        host, _, port = address.rpartition(":")
        self.client: Any = DogStatsd(
            host=host or "127.0.0.1",
            port=int(port),
            namespace=prefix or None,
            disable_telemetry=True,
            origin_detection_enabled=False,
            track_instance=False,
            socket_timeout=0,
        )

    def open(self) -> None:
        """Resolve the address and open the socket (blocking: call it off the loop)."""
        self.client.get_socket()

    def incr(self, key: str, amount: int, tags: Tags | None, sample_rate: float) -> None:
        self.client.increment(
            key,
            amount,
            tags=[f"{k}:{v}" for k, v in tags.items()] if tags else None,
            sample_rate=sample_rate,
        )

    def close(self) -> None:
        self.client.close_socket()
