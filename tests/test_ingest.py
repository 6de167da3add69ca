"""`Deferred`: the batches and flow starts answered in one loop turn are processed after the
answers and reach the sinks in one submit; one the pipeline fails on loses no other's
records, watched by the tap or not."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from router.dispatch import Dispatcher, SinkRunner
from router.enrich.flow import FlowSigner, now_ms
from router.events import FlowQuery, MetricsBody
from router.ingest import Deferred, FlowStart
from router.mapping import Pipeline, RequestInfo
from router.records import FlowEvent, RecordBatch
from router.ruletable import default_rules_path, load_rules
from router.ruletable.ruleset import RuleSet
from router.sinks.memory import MemorySink
from router.stats import Stats
from router.watching.tap import Subscriber, Tap, TapFilter

from .conftest import FLOW_KEY
from .support.bodies import body

EVENTS = [("screen.enter-email", 10), ("flow.enter-email.submit", 20)]


def request() -> RequestInfo:
    """The request info of a request received now (after the flows in `body` began)."""
    return RequestInfo(received=now_ms(), user_agent="Firefox", accept_language="en-US")


class Failing(Pipeline):
    """The pipeline, failing (a bug) on the batches and flow starts of some flows."""

    bad_flows: frozenset[str | None] = frozenset()

    def process_batch(self, body: MetricsBody, req: RequestInfo) -> RecordBatch:
        if body.flowId in self.bad_flows:
            raise OverflowError("a bug")
        return super().process_batch(body, req)

    def begin_flow(
        self, query: FlowQuery, flow_id: str, begin: int, device_id: str, req: RequestInfo
    ) -> RecordBatch:
        if flow_id in self.bad_flows:
            raise OverflowError("a bug")
        return super().begin_flow(query, flow_id, begin, device_id, req)


class Counting(Dispatcher):
    """The dispatcher, remembering every batch submitted to it."""

    def __init__(self, runner: SinkRunner) -> None:
        super().__init__([runner])
        self.submitted: list[RecordBatch] = []

    def submit(self, batch: RecordBatch) -> list[asyncio.Future[None]]:
        self.submitted.append(msgspec.structs.replace(batch))  # its lists as they are now
        return super().submit(batch)


def parts(tap: Tap | None = None) -> tuple[Failing, Counting, Deferred, Stats]:
    stats = Stats()
    pipeline = Failing(RuleSet(load_rules([default_rules_path()])), FlowSigner(FLOW_KEY), stats)
    # Not started: what a submit puts in the buffer stays there.
    dispatcher = Counting(SinkRunner(MemorySink(), stats))
    return pipeline, dispatcher, Deferred(pipeline, dispatcher, tap), stats


def decoded(**overrides: Any) -> MetricsBody:
    return msgspec.convert(body(EVENTS, **overrides), MetricsBody)


def start() -> FlowStart:
    flow_id, begin = FlowSigner(FLOW_KEY).create()
    query = FlowQuery(entrypoint="firstrun", form_type="email")
    return (query, flow_id, begin, "d" * 32, request())


def flow_ids(batch: RecordBatch) -> list[str]:
    return [r.flow_id for r in batch.flow if isinstance(r, FlowEvent)]


async def next_turn() -> None:
    """Returns after every callback scheduled before it (the loop runs them in order)."""
    loop = asyncio.get_running_loop()
    turn = loop.create_future()
    loop.call_soon(turn.set_result, None)
    await turn


async def a_turn_with_failures(
    pipeline: Failing, deferred: Deferred
) -> tuple[MetricsBody, FlowStart, tuple[FlowStart, MetricsBody, MetricsBody]]:
    """One turn: a flow start and a batch the pipeline fails on among good ones; the bad
    batch, the bad start, and the good start, first and last batches."""
    req = request()
    first, bad, last = decoded(), decoded(), decoded()
    good_start, bad_start = start(), start()
    pipeline.bad_flows = frozenset({bad.flowId, bad_start[1]})
    deferred.add_start(bad_start)
    deferred.add_start(good_start)
    for one in (first, bad, last):
        deferred.add(one, req)
    await next_turn()
    return bad, bad_start, (good_start, first, last)


async def test_a_turns_starts_and_batches_reach_the_sinks_in_one_submit() -> None:
    pipeline, dispatcher, deferred, stats = parts()
    req = request()
    bodies = [decoded(), decoded(), decoded()]
    starts = [start(), start()]
    deferred.add(bodies[0], req)
    deferred.add_start(starts[0])
    deferred.add(bodies[1], req)
    deferred.add(bodies[2], req)
    deferred.add_start(starts[1])
    assert not dispatcher.submitted  # nothing before the answers are written
    await next_turn()
    (turn,) = dispatcher.submitted
    # Each kind in order: the flow starts', then the batches', each in arrival order.
    expected = [s[1] for s in starts for _ in range(2)] + [
        b.flowId for b in bodies for _ in range(2)
    ]
    assert flow_ids(turn) == expected
    alone = [pipeline.begin_flow(*s) for s in starts] + [
        pipeline.process_batch(b, req) for b in bodies
    ]
    assert turn.amplitude == [a for batch in alone for a in batch.amplitude]
    assert stats.get("sink.received", sink="memory") == len(turn)
    # The next turn is a submit of its own.
    deferred.add(decoded(), req)
    await next_turn()
    assert len(dispatcher.submitted) == 2


async def test_what_the_pipeline_fails_on_costs_only_its_own_records() -> None:
    pipeline, dispatcher, deferred, stats = parts()
    bad, bad_start, good = await a_turn_with_failures(pipeline, deferred)
    good_start, first, last = good
    (turn,) = dispatcher.submitted
    assert flow_ids(turn) == [good_start[1]] * 2 + [first.flowId] * 2 + [last.flowId] * 2
    assert stats.get("ingest.failed") == 2
    # Every one of a turn failing: nothing to submit, nothing raised.
    deferred.add(bad, request())
    deferred.add_start(bad_start)
    await next_turn()
    assert len(dispatcher.submitted) == 1 and stats.get("ingest.failed") == 4


async def test_watched_each_request_is_submitted_alone_and_a_failure_costs_only_it() -> None:
    tap = Tap(lambda: [("memory", frozenset({"amplitude", "flow"}))])
    subscriber = Subscriber(TapFilter())
    tap.subscribe(subscriber)
    pipeline, dispatcher, deferred, stats = parts(tap)
    _, _, (good_start, first, last) = await a_turn_with_failures(pipeline, deferred)
    assert [flow_ids(batch) for batch in dispatcher.submitted] == [
        [good_start[1]] * 2,
        [first.flowId] * 2,
        [last.flowId] * 2,
    ]
    assert stats.get("ingest.failed") == 2
    published = b"".join(subscriber.lines)
    for flow_id in (good_start[1], first.flowId, last.flowId):
        assert str(flow_id).encode() in published
