"""The sidecar API for back-end services: server-side events and their metrics context.

Every endpoint needs `Authorization: Bearer <[sidecar] token>`. A batch of events is
validated whole (schema, then the event registry) before anything is processed.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec
from aiohttp import web

from ..enrich.flow import now_ms
from ..errors import BadRequest
from ..events import MetricsContext, PropagateBody, ServerEventBatch, StashBody
from ..mapping import ServerItem
from ..state import PIPELINE, SETTINGS, STASH, TAP
from .common import accept, check_capacity, json_response, read_body, require_bearer

T = TypeVar("T")
_decoders: dict[type, msgspec.json.Decoder] = {}  # type: ignore[type-arg]


def authorize(request: web.Request) -> None:
    require_bearer(request, request.app[SETTINGS].sidecar.token)


async def decode(request: web.Request, kind: type[T]) -> T:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        result: T = decoder.decode(await read_body(request))
    except msgspec.ValidationError as exc:
        raise BadRequest.from_validation(exc) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", "$", "bad_json") from exc
    return result


async def post_events(request: web.Request) -> web.Response:
    app = request.app
    authorize(request)
    await check_capacity(app)
    batch = await decode(request, ServerEventBatch)
    limit = app[SETTINGS].sidecar.max_events_per_batch
    if len(batch.events) > limit:
        raise BadRequest(f"too many events (at most {limit})", "$.events", "too_many_events")
    pipeline, stash = app[PIPELINE], app[STASH]
    registry = pipeline.ruleset.registry
    specs = [registry.validate(event, i) for i, event in enumerate(batch.events)]
    received = now_ms()

    async def context_of(index: int) -> MetricsContext | None:
        event = batch.events[index]
        if event.metrics_context is not None or not specs[index].flow:
            return event.metrics_context
        if event.uid is None or event.token_id is None:
            return None
        return await stash.read(event.uid, event.token_id)

    contexts = await asyncio.gather(*(context_of(i) for i in range(len(specs))))
    items = [ServerItem(e, s, c) for e, s, c in zip(batch.events, specs, contexts, strict=True)]
    # In strict mode, answered only once the events are on disk (as POST /metrics).
    await accept(app, app[TAP].server_events(pipeline, items, received))
    done = [
        stash.clear(e.uid, e.token_id)
        for e, s in zip(batch.events, specs, strict=True)
        if s.flow_complete and e.uid is not None and e.token_id is not None
    ]
    if done:
        await asyncio.gather(*done)
    return json_response({"success": True, "accepted": len(items)})


async def post_context(request: web.Request) -> web.Response:
    """Stash a metrics context for a token; add-only (an existing stash stays)."""
    authorize(request)
    body = await decode(request, StashBody)
    stored = await request.app[STASH].stash(body.uid, body.token_id, body.metrics_context)
    return json_response({"stored": stored})


async def post_context_propagate(request: web.Request) -> web.Response:
    """Copy one token's stash to another (e.g. a session token to its successor)."""
    authorize(request)
    body = await decode(request, PropagateBody)
    copied = await request.app[STASH].propagate(body.uid, body.from_token_id, body.to_token_id)
    return json_response({"propagated": copied})
