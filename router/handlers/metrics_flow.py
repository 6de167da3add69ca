"""`GET /metrics-flow`: start a flow (signed flow id) or take a relying party's engage ping."""

from __future__ import annotations

import logging
import uuid

import msgspec
from aiohttp import web

from ..errors import BadRequest, Forbidden
from ..events import FlowQuery
from ..state import STATE
from ..tap import begin_names
from .common import accept, check_capacity, json_response, request_info

log = logging.getLogger("request.metrics-flow")


def parse_query(request: web.Request) -> FlowQuery:
    try:
        return msgspec.convert(dict(request.query), FlowQuery)
    except msgspec.ValidationError as exc:
        raise BadRequest.from_validation(exc) from exc


def cors_headers(origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    if origin is None or origin not in allowed:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def get_metrics_flow(request: web.Request) -> web.Response:
    state = request.app[STATE]
    check_capacity(state)
    query = parse_query(request)
    origin = request.headers.get("Origin")
    headers = cors_headers(origin, state.allowed_origins)
    engage = query.event_type == "engage"
    if origin is not None and not headers and not engage:
        log.info("request.metrics-flow.bad-origin %s", origin)
        state.stats.incr("metrics_flow.bad_origin")
        raise Forbidden("origin not allowed", "$.headers.origin", "bad_origin")

    flow_id, begin = state.signer.create()
    device_id = uuid.uuid4().hex
    req = request_info(request, state.settings.server.trusted_proxies)
    pipeline = state.pipeline
    if not engage:
        batch = pipeline.begin_flow(query, flow_id, begin, device_id, req)
        await accept(
            state, state.tap.request(pipeline, "/metrics-flow", begin_names(query.form_type), batch)
        )
        state.stats.incr("metrics_flow.begin")
    elif not headers:
        state.stats.incr("metrics_flow.engage.dropped", 1, {"reason": "bad_origin"})
    elif query.service not in state.settings.flow.clients:
        state.stats.incr("metrics_flow.engage.dropped", 1, {"reason": "unknown_client"})
    elif query.uid is None:
        state.stats.incr("metrics_flow.engage.dropped", 1, {"reason": "missing_uid"})
    else:
        batch = pipeline.engage(query, flow_id, begin, device_id, req)
        await accept(
            state, state.tap.request(pipeline, "/metrics-flow", ("flow.rp.engage",), batch)
        )
        state.stats.incr("metrics_flow.engage")
    body = {"deviceId": device_id, "flowBeginTime": begin, "flowId": flow_id}
    return json_response(body, headers=headers)


async def options_metrics_flow(request: web.Request) -> web.Response:
    """CORS preflight: only for allowed origins."""
    state = request.app[STATE]
    headers = cors_headers(request.headers.get("Origin"), state.allowed_origins)
    if not headers:
        raise Forbidden("origin not allowed", "$.headers.origin", "bad_origin")
    headers["Access-Control-Allow-Methods"] = "GET"
    return web.Response(status=204, headers=headers)
