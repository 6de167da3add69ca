"""Start-up warm-up: every path a request takes runs once before the first request does.

What is built on first use (msgspec's conversion plan for a query, the rule table's
cache of fuzzy results, the parsers' caches, the log sink's encoders, the thread that
writes log files) would otherwise be paid by the first client (`bench` scenario
`first`). The warm-up's records are made and encoded, never sent, and its counters go
to a throw-away `Stats`: `/__stats__` shows traffic only.
"""

from __future__ import annotations

import asyncio

import msgspec

from .enrich.flow import now_ms
from .events import FlowQuery, MetricsBody, metrics_body_decoder
from .mapping import Pipeline, RequestInfo
from .records import Record, RecordBatch
from .sinks.base import Sink
from .sinks.log import LogSink
from .stats import Stats

_USER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0"
# A content-server journey's names: the exact, fuzzy and unmapped kinds of rule lookup.
_NAMES = ("screen.signin", "flow.signin.engage", "flow.signin.submit", "flow.have-account")


def _body(pipeline: Pipeline, now: int) -> MetricsBody:
    flow_id, begin = pipeline.signer.create(now - 1000)
    data = {
        "flowId": flow_id,
        "flowBeginTime": begin,
        "deviceId": "0" * 32,
        "startTime": begin,
        "flushTime": now,
        "duration": 1000,
        "service": "sync",
        "lang": "en-US",
        "uid": "none",
        "events": [{"type": name, "offset": i} for i, name in enumerate(_NAMES)],
    }
    return metrics_body_decoder.decode(msgspec.json.encode(data))


def _records(pipeline: Pipeline) -> RecordBatch:
    """A batch and a flow start through the pipeline, counted nowhere."""
    now = now_ms()
    req = RequestInfo(
        received=now, user_agent=_USER_AGENT, ip="127.0.0.1", accept_language="en-US,en;q=0.5"
    )
    counted = pipeline.stats
    pipeline.stats = Stats()
    try:
        out = pipeline.process_batch(_body(pipeline, now), req)
        query = msgspec.convert({"entrypoint": "firstrun", "form_type": "email"}, FlowQuery)
        flow_id, begin = pipeline.signer.create(now)
        started = pipeline.begin_flow(query, flow_id, begin, "0" * 32, req)
    finally:
        pipeline.stats = counted
    out.amplitude.extend(started.amplitude)
    out.flow.extend(started.flow)
    return out


async def warm(pipeline: Pipeline, sinks: list[Sink]) -> None:
    """Run the request path once; start the thread that writes files."""
    batch = _records(pipeline)
    records: list[Record] = [*batch.flow, *batch.amplitude]
    for sink in sinks:
        if isinstance(sink, LogSink):
            sink.encode(records)
    # The default executor (asyncio.to_thread) starts its first thread on first use.
    await asyncio.to_thread(lambda: None)
