"""Work accepted with a 200 and done right after the response, a loop turn's worth at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any

from .dispatch import Dispatcher
from .events import FlowQuery, MetricsBody
from .mapping import Pipeline, RequestInfo
from .records import RecordBatch
from .watching.tap import Tap, begin_names

# What `GET /metrics-flow` hands over: the query, flow id, begin time, device id, request.
FlowStart = tuple[FlowQuery, str, int, str, RequestInfo]

log = logging.getLogger(__name__)


class Deferred:
    """Batches and flow starts answered in one event-loop turn are processed together in
    one callback.

    One callback per turn instead of one per request keeps the pipeline's code and
    tables hot in the CPU caches, and the turn's records reach the sinks in one submit
    (one chunk a sink, one spool row for a durable one) instead of one a request. The
    callback is CPU only and is scheduled before the response is written, so it always
    runs before any shutdown step awaits. (In strict mode the handlers do the work
    themselves: their 200 waits for the disk.)
    """

    def __init__(self, pipeline: Pipeline, dispatcher: Dispatcher, tap: Tap | None = None) -> None:
        self.pipeline = pipeline
        self.dispatcher = dispatcher
        self.tap = tap
        self._pending: list[tuple[MetricsBody, RequestInfo]] = []
        self._starts: list[FlowStart] = []
        self._scheduled = False

    def add(self, body: MetricsBody, req: RequestInfo) -> None:
        """A `POST /metrics` batch, checked and answered."""
        if not self._scheduled:
            self._schedule()
        self._pending.append((body, req))

    def add_start(self, start: FlowStart) -> None:
        """A `GET /metrics-flow` flow start, answered with its flow id."""
        if not self._scheduled:
            self._schedule()
        self._starts.append(start)

    def _schedule(self) -> None:
        asyncio.get_running_loop().call_soon(self._drain)
        self._scheduled = True

    def _drain(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        starts, self._starts = self._starts, []
        pipeline, submit = self.pipeline, self.dispatcher.submit
        tap = self.tap
        if tap is not None and tap.subscribers:
            # Watched: each request's records are published, and submitted, on their own.
            for batch in self._made(self.begin, starts):
                submit(batch)
            for batch in self._made(self._watched_batch, pending):
                submit(batch)
            return
        turn: RecordBatch | None = None
        made = chain(
            self._made(pipeline.begin_flow, starts), self._made(pipeline.process_batch, pending)
        )
        for batch in made:
            if turn is None:
                turn = batch  # the turn's first batch collects the others' records
                continue
            turn.amplitude += batch.amplitude
            turn.flow += batch.flow
            turn.vwo += batch.vwo
            turn.activity += batch.activity
            turn.client_metrics += batch.client_metrics
        if turn is not None:
            submit(turn)

    def _made(
        self, make: Callable[..., RecordBatch], items: Sequence[tuple[Any, ...]]
    ) -> Iterator[RecordBatch]:
        """The records `make` makes of each item; an item it fails on is logged, counted
        and skipped."""
        for item in items:
            try:
                batch = make(*item)
            except Exception:
                # A bug, not bad input (that was refused before the answer): the other
                # requests of the turn still go out.
                log.exception("processing a request after its answer failed")
                self.pipeline.stats.incr("ingest.failed")
                continue
            yield batch

    def _watched_batch(self, body: MetricsBody, req: RequestInfo) -> RecordBatch:
        assert self.tap is not None
        return self.tap.metrics_batch(self.pipeline, body, req)

    def begin(
        self, query: FlowQuery, flow_id: str, begin: int, device_id: str, req: RequestInfo
    ) -> RecordBatch:
        """A flow start's records, published to the tap when someone watches (strict
        mode's handler calls this itself)."""
        batch = self.pipeline.begin_flow(query, flow_id, begin, device_id, req)
        if self.tap is None:
            return batch
        names = begin_names(query.form_type)
        return self.tap.request(self.pipeline, "/metrics-flow", names, batch)
