"""FxA's `client.metrics` stream: sampled users' batches, one JSON line each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..config import DROP_CACHE_MB
from ..records import ClientMetrics, Record
from .base import Kind
from .fxa_format import client_metrics_line
from .log import LogSink


class ClientMetricsSink(LogSink):
    """Writes `op: "client.metrics"` lines (metrics-collector-stderr.js) for its pipeline."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"client_metrics"})

    def __init__(self, name: str, path: str = "-", drop_cache_mb: int = DROP_CACHE_MB) -> None:
        super().__init__(name, path, drop_cache_mb=drop_cache_mb)

    def pieces(self, records: Sequence[Record]) -> list[bytes | memoryview]:
        encode = self._encoder.encode
        lines = [
            encode(client_metrics_line(r, self.hostname, self.pid))
            for r in records
            if isinstance(r, ClientMetrics)
        ]
        return [b"\n".join(lines) + b"\n"] if lines else []
