"""Dead letters: records a destination refused or never took, one JSON line each, with a reason.

A stand-in for the durable spool: the interface (`write`) is what sinks depend on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import Any

import msgspec


class DeadLetter(msgspec.Struct):
    destination: str
    reason: str
    time: int
    record: Any


# One lock per file so that several sinks appending to one path never interleave lines.
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


class DeadLetters:
    """Appends dead letters to a JSON-lines file off the event loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._encoder = msgspec.json.Encoder()
        self._lock = _lock_for(path)

    def encode(self, destination: str, items: Iterable[tuple[str, Any]]) -> bytes:
        now = int(time.time() * 1000)
        return self._encoder.encode_lines(
            [DeadLetter(destination, reason, now, record) for reason, record in items]
        )

    def _append(self, data: bytes) -> None:
        with self._lock, open(self.path, "ab") as fh:
            fh.write(data)

    async def write(self, destination: str, items: Iterable[tuple[str, Any]]) -> None:
        """Append (reason, record) pairs for `destination`; records must be JSON-encodable."""
        data = self.encode(destination, items)
        if data:
            await asyncio.to_thread(self._append, data)


def read_dead_letters(path: str) -> list[DeadLetter]:
    """Every dead letter in a file (tests and replay tools)."""
    with open(path, "rb") as fh:
        return [msgspec.json.decode(line, type=DeadLetter) for line in fh if line.strip()]
