"""`Deferred`: the batches answered in one loop turn are processed after the answers and
reach each sink as one submit; a batch the pipeline fails on loses no other's records."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from router.dispatch import Dispatcher, SinkRunner
from router.enrich.flow import FlowSigner, now_ms
from router.events import MetricsBody
from router.ingest import Deferred
from router.mapping import Pipeline, RequestInfo
from router.records import AmplitudeEvent, FlowEvent, RecordBatch
from router.ruletable import default_rules_path, load_rules
from router.ruletable.ruleset import RuleSet
from router.sinks.memory import MemorySink
from router.stats import Stats

from .conftest import FLOW_KEY
from .support.bodies import body

EVENTS = [("screen.enter-email", 10), ("flow.enter-email.submit", 20)]


class Failing(Pipeline):
    """The pipeline, failing (a bug) on the batches of one flow."""

    bad_flow: str | None = None

    def process_batch(self, body: MetricsBody, req: RequestInfo) -> RecordBatch:
        if body.flowId == self.bad_flow:
            raise OverflowError("a bug")
        return super().process_batch(body, req)


def parts() -> tuple[Failing, Dispatcher, SinkRunner, Stats]:
    stats = Stats()
    pipeline = Failing(RuleSet(load_rules([default_rules_path()])), FlowSigner(FLOW_KEY), stats)
    # Not started: what a submit puts in the buffer stays there to be looked at.
    runner = SinkRunner(MemorySink(), stats)
    return pipeline, Dispatcher([runner]), runner, stats


def decoded(**overrides: Any) -> MetricsBody:
    return msgspec.convert(body(EVENTS, **overrides), MetricsBody)


def flow_ids(runner: SinkRunner) -> list[str]:
    """The flow ids of the flow events queued for the runner's sink, in order."""
    queue = runner.buffer.queue  # type: ignore[attr-defined]
    return [r.flow_id for chunk in queue for r in chunk.records if isinstance(r, FlowEvent)]


async def next_turn() -> None:
    """Returns after every callback scheduled before it (the loop runs them in order)."""
    loop = asyncio.get_running_loop()
    turn = loop.create_future()
    loop.call_soon(turn.set_result, None)
    await turn


async def test_a_turns_batches_reach_a_sink_as_one_submit_in_order() -> None:
    pipeline, dispatcher, runner, stats = parts()
    deferred = Deferred(pipeline, dispatcher)
    req = RequestInfo(received=now_ms(), user_agent="Firefox", accept_language="en-US")
    bodies = [decoded(), decoded(), decoded()]
    for one in bodies:
        deferred.add(one, req)
    assert runner.buffer.queued == 0  # nothing before the answers are written
    await next_turn()
    expected = RecordBatch()
    for one in bodies:
        batch = pipeline.process_batch(one, req)
        expected.flow += batch.flow
        expected.amplitude += batch.amplitude
    assert len(expected.flow) == 6 and len(expected.amplitude) == 6
    queue = runner.buffer.queue  # type: ignore[attr-defined]
    assert len(queue) == 1  # one chunk for the turn
    records = queue[0].records
    # Each kind in request order (the flow events, then the Amplitude events).
    assert [r for r in records if isinstance(r, FlowEvent)] == expected.flow
    assert [r for r in records if isinstance(r, AmplitudeEvent)] == expected.amplitude
    assert stats.get("sink.received", sink="memory") == 12


async def test_a_batch_the_pipeline_fails_on_costs_only_its_own_records() -> None:
    pipeline, dispatcher, runner, stats = parts()
    deferred = Deferred(pipeline, dispatcher)
    req = RequestInfo(received=now_ms(), user_agent="Firefox", accept_language="en-US")
    first, bad, last = decoded(), decoded(), decoded()
    pipeline.bad_flow = bad.flowId
    for one in (first, bad, last):
        deferred.add(one, req)
    await next_turn()
    assert flow_ids(runner) == [first.flowId] * 2 + [last.flowId] * 2
    assert stats.get("ingest.failed") == 1
    # The turn's first batch failing: the next one still goes out.
    pipeline.bad_flow = first.flowId
    deferred.add(first, req)
    deferred.add(last, req)
    await next_turn()
    assert flow_ids(runner) == [first.flowId] * 2 + [last.flowId] * 4
    assert stats.get("ingest.failed") == 2
