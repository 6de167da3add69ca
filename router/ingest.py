"""Work accepted with a 200 and done right after the response, a loop turn's worth at a time."""

from __future__ import annotations

import asyncio
import logging

from .dispatch import Dispatcher
from .events import MetricsBody
from .mapping import Pipeline, RequestInfo
from .records import RecordBatch
from .watching.tap import Tap

log = logging.getLogger(__name__)


class Deferred:
    """Batches answered in one event-loop turn are processed together in one callback.

    One callback per turn instead of one per request keeps the pipeline's code and
    tables hot in the CPU caches, and the turn's records reach the sinks in one submit
    (one chunk a sink, one spool row for a durable one) instead of one a request. The
    callback is CPU only and is scheduled before the response is written, so it always
    runs before any shutdown step awaits.
    """

    def __init__(self, pipeline: Pipeline, dispatcher: Dispatcher, tap: Tap | None = None) -> None:
        self.pipeline = pipeline
        self.dispatcher = dispatcher
        self.tap = tap
        self._pending: list[tuple[MetricsBody, RequestInfo]] = []

    def add(self, body: MetricsBody, req: RequestInfo) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._drain)
        self._pending.append((body, req))

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        process, submit = self.pipeline.process_batch, self.dispatcher.submit
        tap = self.tap
        if tap is not None and tap.subscribers:
            for body, req in pending:
                submit(tap.metrics_batch(self.pipeline, body, req))
            return
        turn: RecordBatch | None = None
        for body, req in pending:
            try:
                batch = process(body, req)
            except Exception:
                # A bug, not bad input (that was refused before the 200): the other
                # requests of the turn still go out.
                log.exception("processing a batch of flow %s failed", body.flowId)
                self.pipeline.stats.incr("ingest.failed")
                continue
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
