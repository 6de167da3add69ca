"""The retry engine alone: classification in, budget, backoff and drops out (pure units)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from router.errors import TransportError
from router.sinks.base import Dropped
from router.sinks.retry import (
    Action,
    Backoff,
    Done,
    Drop,
    Partial,
    Retry,
    RetryPolicy,
    Split,
)


class Script:
    """An attempt function answering from a script; it records what it was sent."""

    def __init__(self, answer: Callable[[list[int]], Action]) -> None:
        self.answer = answer
        self.sent: list[list[int]] = []

    async def __call__(self, items: list[int]) -> Action:
        self.sent.append(list(items))
        return self.answer(items)


class Clock:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(max_retries: int = 3, clock: Clock | None = None) -> RetryPolicy:
    return RetryPolicy(max_retries, Backoff(1.0, 4.0, rng=lambda: 1.0), (clock or Clock()).sleep)


def reasons(dropped: Sequence[Dropped]) -> list[tuple[str, object]]:
    return [(d.reason, d.record) for d in dropped]


async def test_done_at_once_and_empty_batches_cost_nothing() -> None:
    script = Script(lambda items: Done())
    assert await policy().run([1, 2], script) == []
    assert await policy().run([], script) == []
    assert script.sent == [[1, 2]]


async def test_budget_is_retries_then_gave_up_with_the_last_reason() -> None:
    clock = Clock()
    script = Script(lambda items: Retry("http_500"))
    retried: list[tuple[int, str]] = []
    dropped = await policy(3, clock).run(
        [1, 2], script, on_retry=lambda n, r: retried.append((n, r))
    )
    assert len(script.sent) == 4  # the first try and three retries
    assert reasons(dropped) == [("gave_up:http_500", 1), ("gave_up:http_500", 2)]
    assert retried == [(2, "http_500")] * 3
    assert clock.waits == [1.0, 2.0, 4.0]  # capped exponential (jitter pinned to its top)


async def test_transport_errors_are_retried_under_their_reason() -> None:
    answers: Iterator[Action | Exception] = iter([TransportError("timeout"), Done()])

    async def attempt(items: list[int]) -> Action:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    retried: list[str] = []
    assert await policy().run([1], attempt, on_retry=lambda n, r: retried.append(r)) == []
    assert retried == ["timeout"]


async def test_partial_drops_those_and_resends_the_rest_at_once() -> None:
    clock = Clock()
    script = Script(lambda items: Partial({1: "invalid"}) if len(items) == 3 else Done())
    dropped = await policy(clock=clock).run([10, 20, 30], script, letter=lambda i: -i)
    assert reasons(dropped) == [("invalid", -20)]
    assert script.sent == [[10, 20, 30], [10, 30]]
    assert clock.waits == []  # no backoff: the rest was not refused


async def test_partial_later_waits_out_the_pause_on_its_own() -> None:
    clock = Clock()
    script = Script(
        lambda items: Partial({0: "quota"}, frozenset({1}), 30.0) if len(items) == 3 else Done()
    )
    dropped = await policy(clock=clock).run([1, 2, 3], script)
    assert reasons(dropped) == [("quota", 1)]
    assert script.sent == [[1, 2, 3], [3], [2]]  # the throttled one last, after its pause
    assert clock.waits == [30.0]


async def test_partial_naming_nothing_is_a_retry() -> None:
    script = Script(lambda items: Partial({7: "out of range"}) if len(script.sent) < 2 else Done())
    assert await policy().run([1], script) == []
    assert len(script.sent) == 2


async def test_a_deferred_send_may_defer_again() -> None:
    clock = Clock()
    script = Script(
        lambda items: Partial({}, frozenset({0}), 5.0) if len(script.sent) < 3 else Done()
    )
    assert await policy(clock=clock).run([1], script) == []
    assert script.sent == [[1], [1], [1]] and clock.waits == [5.0, 5.0]


async def test_split_isolates_the_bad_item() -> None:
    script = Script(lambda items: Split("too_large") if 5 in items else Done())
    dropped = await policy().run(list(range(8)), script)
    assert reasons(dropped) == [("too_large", 5)]
    assert len(script.sent) == 7  # 8 → 4+4 → 2+2 → 1+1


async def test_retry_only_resends_what_was_not_taken() -> None:
    script = Script(lambda items: Retry("nak", only=(1,)) if len(items) == 3 else Done())
    assert await policy().run([1, 2, 3], script) == []
    assert script.sent == [[1, 2, 3], [2]]


async def test_drop_and_the_pause_of_a_retry() -> None:
    clock = Clock()
    answers: Iterator[Action] = iter([Retry("throttled", pause=9.0), Drop("bad_request")])
    dropped = await policy(clock=clock).run([1], Script(lambda items: next(answers)), kind="x")
    assert dropped == [Dropped("bad_request", 1, "x")]
    assert clock.waits == [9.0]  # the destination's pause beats a shorter backoff


def test_backoff_is_capped_full_jitter_and_budgets_convert() -> None:
    top = Backoff(1.0, 8.0, rng=lambda: 0.999999)
    assert [round(top.delay(a)) for a in (1, 2, 3, 4, 5, 100)] == [1, 2, 4, 8, 8, 8]
    assert Backoff(1.0, 8.0, rng=lambda: 0.0).delay(3) == 0.0
    # 1 + 2 + 4 + 8 = 15 s for four retries, then one more per 8 s.
    assert Backoff(1.0, 8.0).retries_within(15.0) == 4
    assert Backoff(1.0, 8.0).retries_within(31.0) == 6
    assert Backoff(0.01, 0.01).retries_within(0.03) == 3
    assert Backoff(1.0, 8.0).retries_within(0.5) == 0
