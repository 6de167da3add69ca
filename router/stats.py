"""Counters: one `incr` used everywhere in the router.

Counts are kept exactly in process (for `/__stats__`); exporters such as statsd
receive each call with its sample rate (the default one when the caller passes
none) and do their own sampling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

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

    def counter(self, key: str, tags: Tags | None = None) -> Counter:
        """A handle on one counter, for hot paths: its key is built once, not per call."""
        return Counter(self, key, dict(tags) if tags else None)

    def note(self, key: str, amount: int = 1) -> None:
        """Count without exporting: for the exporters' own failures."""
        ident: Key = (key, ())
        self.counters[ident] = self.counters.get(ident, 0) + amount

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
                by_name.setdefault(name, []).append(
                    f"{name}{_prom_labels(tags)} {_prom_number(value)}"
                )
            for name, samples in by_name.items():
                lines.append(f"# TYPE {name} {kind}")
                lines.extend(samples)
        return "\n".join(lines) + "\n"


class Counter:
    """`Stats.incr` of one key and tag set, with the key made once."""

    __slots__ = ("stats", "key", "tags", "ident")

    def __init__(self, stats: Stats, key: str, tags: Tags | None) -> None:
        self.stats = stats
        self.key = key
        self.tags = tags
        self.ident: Key = (key, tuple(sorted(tags.items())) if tags else ())

    def incr(self, amount: int = 1) -> None:
        stats = self.stats
        counters = stats.counters
        counters[self.ident] = counters.get(self.ident, 0) + amount
        if stats.exporters:
            for exporter in stats.exporters:
                exporter.incr(self.key, amount, self.tags, stats.default_sample_rate)


def _prom_number(value: float) -> str:
    # Not `:g`: it keeps six digits, and counters pass a million.
    return str(int(value)) if value.is_integer() else repr(value)


def _prom_name(text: str) -> str:
    return _PROM_BAD.sub("_", text)


def _prom_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _prom_labels(tags: tuple[tuple[str, str], ...]) -> str:
    if not tags:
        return ""
    return "{" + ",".join(f'{_prom_name(k)}="{_prom_value(v)}"' for k, v in tags) + "}"


# DogStatsD's rule for tags: anything else becomes `_` (`,` `|` `#` would break a line).
_TAG_BAD = re.compile(r"[^\w\-:/.]")


class StatsdExporter:
    """Counters to statsd / DogStatsD over UDP: one line a call, sampled here, never blocking.

    The socket is non-blocking and connected: a full buffer drops the packet, and with
    nothing listening the kernel reports the refusal on a later send. Either way the
    packet is lost, counted (`stats.statsd.dropped`, not exported) and logged once: a
    missing statsd must not turn every counter into a WARNING line.
    """

    def __init__(self, address: str, prefix: str, stats: Stats | None = None) -> None:
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.prefix = f"{prefix}." if prefix else ""
        self.stats = stats
        self.dropped = 0
        self._sock: socket.socket | None = None
        self._warned = False

    def open(self) -> None:
        """Resolve the address and open the socket (blocking: call it off the loop)."""
        family, kind, proto, _, addr = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_DGRAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.connect(addr)
        self._sock = sock

    def line(self, key: str, amount: int, tags: Tags | None, sample_rate: float) -> bytes:
        """One counter increment in the DogStatsD line format."""
        text = f"{self.prefix}{key}:{amount}|c"
        if sample_rate < 1:
            text += f"|@{sample_rate:g}"
        if tags:
            text += "|#" + ",".join(_TAG_BAD.sub("_", f"{k}:{v}") for k, v in tags.items())
        return text.encode()

    def incr(self, key: str, amount: int, tags: Tags | None, sample_rate: float) -> None:
        if self._sock is None or (sample_rate < 1 and random.random() >= sample_rate):
            return
        try:
            self._sock.send(self.line(key, amount, tags, sample_rate))
        except OSError as exc:
            self._drop(exc)

    def _drop(self, exc: OSError) -> None:
        self.dropped += 1
        if self.stats is not None:
            self.stats.note("stats.statsd.dropped")
        if not self._warned:
            self._warned = True
            log.warning(
                "statsd %s:%d: packets are being lost (%s); counting them in"
                " stats.statsd.dropped, not logging each",
                self.host,
                self.port,
                exc.strerror or exc,
            )

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@contextlib.asynccontextmanager
async def exporting(stats: Stats, statsd: str, prefix: str) -> AsyncIterator[Stats]:
    """`stats` exported to statsd at `statsd` ("host:port"; empty: not exported) meanwhile."""
    if not statsd:
        yield stats
        return
    exporter = StatsdExporter(statsd, prefix, stats)
    await asyncio.to_thread(exporter.open)
    stats.exporters.append(exporter)
    try:
        yield stats
    finally:
        stats.exporters.remove(exporter)
        exporter.close()
