"""Retry policy shared by the delivery sinks: capped exponential backoff with full jitter.

Classifying a response (ok / retry / drop) is each sink's business; this module only
decides how long to wait, so the two halves can be read and tested apart.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]


class Backoff:
    """Delay before retry `attempt` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""

    def __init__(
        self,
        base_seconds: float,
        cap_seconds: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base_seconds
        self.cap = cap_seconds
        self.rng = rng

    def ceiling(self, attempt: int) -> float:
        # Bound the exponent so a long outage cannot overflow the float.
        return min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), 62))

    def delay(self, attempt: int) -> float:
        return self.rng() * self.ceiling(attempt)


async def sleep(seconds: float) -> None:
    """`asyncio.sleep`, named so sinks can take an injected replacement."""
    await asyncio.sleep(seconds)
