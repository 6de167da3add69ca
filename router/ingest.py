"""Work accepted with a 200 and done right after the response, a loop turn's worth at a time."""

from __future__ import annotations

import asyncio

from .dispatch import Dispatcher
from .events import MetricsBody
from .mapping import Pipeline, RequestInfo
from .watching.tap import Tap


class Deferred:
    """Batches answered in one event-loop turn are processed together in one callback.

    One callback per turn instead of one per request keeps the pipeline's code and
    tables hot in the CPU caches. The callback is CPU only and is scheduled before
    the response is written, so it always runs before any shutdown step awaits.
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
        for body, req in pending:
            submit(process(body, req))
