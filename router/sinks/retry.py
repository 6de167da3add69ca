"""The one retry engine: each sink classifies an answer, one policy decides what follows.

The shape is Vector's `RetryLogic` (src/sinks/util/retries.rs): a sink turns every
response into an `Action` (done / retry / partial / drop, with a reason) and never
loops itself; `RetryPolicy` applies the budget (one unit: retries after the first
try) and capped exponential backoff with full jitter, and returns what it dropped.
Transport failures arrive as `TransportError` (raised by `sinks/http.py`) and are
retried like any other temporary answer.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from ..errors import TransportError
from .base import Dropped

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


async def sleep(seconds: float) -> None:
    """`asyncio.sleep`, named so sinks can take an injected replacement."""
    await asyncio.sleep(seconds)


# -- what a sink's classification says ------------------------------------------------------


class Done(msgspec.Struct):
    """Every item was taken."""


class Retry(msgspec.Struct):
    """Not (certainly) taken; send again, not before `pause` seconds.

    `only` names the indexes still to send when the others were taken (None: all).
    """

    reason: str
    pause: float = 0.0
    only: tuple[int, ...] | None = None


class Partial(msgspec.Struct):
    """Drop the items at these indexes (index -> reason), send the rest again at once.

    Items in `later` are sent again on their own after `pause` seconds (a 429 naming
    the throttled users), the others without waiting.
    """

    drop: dict[int, str]
    later: frozenset[int] = frozenset()
    pause: float = 0.0
    reason: str = "partial"


class Drop(msgspec.Struct):
    """The destination will never take these items."""

    reason: str


class Split(msgspec.Struct):
    """The fault is somewhere in the batch (a 400 naming nothing, a 413): halve it.

    A single item is dropped with `reason`; halving finds it in log2(n) requests.
    """

    reason: str


Action = Done | Retry | Partial | Drop | Split


# -- the policy ------------------------------------------------------------------------------


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

    def retries_within(self, seconds: float) -> int:
        """How many retries fit in `seconds` if every wait is its longest: a time budget
        expressed in the policy's one unit."""
        total = 0.0
        attempt = 0
        while self.ceiling(attempt + 1) < self.cap:
            if total + self.ceiling(attempt + 1) > seconds:
                return attempt
            attempt += 1
            total += self.ceiling(attempt)
        # A little slack, so that 0.03 s of 0.01 s waits is three, not two.
        return attempt + max(0, math.floor((seconds - total) / self.cap + 1e-9))


Attempt = Callable[[list[T]], Awaitable[Action]]
OnRetry = Callable[[int, str], None]


def _same(item: Any) -> Any:
    return item


def _narrows(partial: Partial, count: int) -> bool:
    """Does the answer name any of the `count` items (else it is a plain retry)?"""
    return any(0 <= i < count for i in (*partial.drop, *partial.later))


class RetryPolicy:
    """Runs a sink's attempts over a batch until each item is taken or dropped."""

    def __init__(self, max_retries: int, backoff: Backoff, sleep: Sleep = sleep) -> None:
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep

    async def run(
        self,
        items: list[T],
        attempt: Attempt[T],
        *,
        letter: Callable[[T], Any] = _same,
        kind: str | None = None,
        on_retry: OnRetry | None = None,
    ) -> list[Dropped]:
        """Deliver `items`; what was dropped, each with its reason (`letter` is what the
        dead-letter store keeps of an item, `kind` its dead-letter kind)."""
        run = _Run(self, attempt, letter, kind, on_retry or (lambda n, r: None))
        try:
            await run.deliver(items, 0)
            # A deferred send may defer again: wait until none is left.
            while pending := [task for task in run.later if not task.done()]:
                await asyncio.gather(*pending)
        finally:
            for task in run.later:
                task.cancel()
        return run.dropped


class _Run:
    """One `RetryPolicy.run`: the drops so far and the deferred sends still running."""

    def __init__(
        self,
        policy: RetryPolicy,
        attempt: Attempt[Any],
        letter: Callable[[Any], Any],
        kind: str | None,
        on_retry: OnRetry,
    ) -> None:
        self.policy = policy
        self.attempt = attempt
        self.letter = letter
        self.kind = kind
        self.on_retry = on_retry
        self.dropped: list[Dropped] = []
        self.later: list[asyncio.Task[None]] = []

    def drop(self, items: list[Any], reason: str) -> None:
        self.dropped.extend(Dropped(reason, self.letter(item), self.kind) for item in items)

    async def deliver(self, items: list[Any], retries: int) -> None:
        policy = self.policy
        while items:
            try:
                action = await self.attempt(items)
            except TransportError as exc:
                action = Retry(exc.reason)
            match action:
                case Done():
                    return
                case Drop(reason=reason):
                    self.drop(items, reason)
                    return
                case Split(reason=reason):
                    if len(items) == 1:
                        self.drop(items, reason)
                        return
                    self.on_retry(len(items), reason.split(":")[0])
                    half = len(items) // 2
                    await asyncio.gather(
                        self.deliver(items[:half], retries), self.deliver(items[half:], retries)
                    )
                    return
                case Partial(drop=drop, later=later) if _narrows(action, len(items)):
                    self.dropped.extend(
                        Dropped(drop[i], self.letter(items[i]), self.kind)
                        for i in sorted(drop)
                        if 0 <= i < len(items)
                    )
                    deferred = [x for i, x in enumerate(items) if i in later and i not in drop]
                    items = [x for i, x in enumerate(items) if i not in drop and i not in later]
                    if deferred:
                        self.later.append(
                            asyncio.create_task(self._after(deferred, action.pause, retries))
                        )
                    if items:
                        self.on_retry(len(items), action.reason)
                case Retry() | Partial():
                    reason = action.reason
                    retries += 1
                    if retries > policy.max_retries:
                        self.drop(items, f"gave_up:{reason}")
                        return
                    pause = 0.0
                    if isinstance(action, Retry):
                        pause = action.pause
                        if action.only is not None:
                            items = [items[i] for i in action.only if 0 <= i < len(items)]
                    self.on_retry(len(items), reason)
                    await policy.sleep(max(policy.backoff.delay(retries), pause))

    async def _after(self, items: list[Any], pause: float, retries: int) -> None:
        await self.policy.sleep(pause)
        await self.deliver(items, retries)
