"""`POST /metrics`: validate the whole batch, answer 200, then process it."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..errors import BadRequest
from ..events import MetricsBody, check_patterns, metrics_body_decoder
from ..state import DEFERRED, PIPELINE, SETTINGS, TAP
from .answer import Answer
from .common import accept, check_capacity, read_body, request_info

SUCCESS = b'{"success":true}'


def check_ranges(body: MetricsBody, max_offset_ms: int, max_events: int) -> None:
    """FxA's checks after the schema: duration, flush-start span, every event offset."""
    if len(body.events) > max_events:
        raise BadRequest(f"too many events (at most {max_events})", "$.events", "too_many_events")
    if not 0 <= body.duration <= max_offset_ms:
        raise BadRequest("invalid duration", "$.duration", "bad_duration")
    span = body.flushTime - body.startTime
    if not 0 <= span <= max_offset_ms:
        raise BadRequest(
            f"max offset exceeds maximum of {max_offset_ms}", "$.flushTime", "bad_flush_time"
        )
    for index, event in enumerate(body.events):
        if event.offset > span:
            raise BadRequest(
                f"offset exceeds maximum of {span}", f"$.events[{index}].offset", "bad_event_offset"
            )


def decode_body(data: bytes) -> MetricsBody:
    try:
        body = metrics_body_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise BadRequest.from_validation(exc) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", "$", "bad_json") from exc
    check_patterns(body)
    return body


async def post_metrics(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    await check_capacity(app)
    # JSON and text/plain (navigator.sendBeacon) bodies are both parsed as JSON.
    body = decode_body(await read_body(request))
    check_ranges(
        body, settings.flow.max_event_offset_seconds * 1000, settings.server.max_events_per_batch
    )
    req = request_info(request, settings.server.trusted_proxies)
    if settings.spool.strict:
        # The 200 promises the events are on disk.
        pipeline, tap = app[PIPELINE], app[TAP]
        if tap.subscribers:
            await accept(app, tap.metrics_batch(pipeline, body, req))
        else:
            await accept(app, pipeline.process_batch(body, req))
    else:
        app[DEFERRED].add(body, req)
    return Answer(SUCCESS)
