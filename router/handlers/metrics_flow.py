"""`GET /metrics-flow`: start a flow (signed flow id) or take a relying party's engage ping."""

from __future__ import annotations

import logging
import os

import msgspec
from aiohttp import web

from ..errors import BadRequest, Forbidden
from ..events import FlowQuery
from ..state import ALLOWED_ORIGINS, DEFERRED, PIPELINE, SETTINGS, SIGNER, STATS, TAP
from .answer import Answer
from .common import accept, check_capacity, request_info

log = logging.getLogger("request.metrics-flow")
_json = msgspec.json.Encoder()


# Raw query string -> its FlowQuery. The pages that start flows send a few query strings
# (their entrypoint and utm parameters) over and over. Bounded twice: short strings only,
# and cleared when full, so a flood of distinct queries costs no memory.
_QUERIES: dict[str, FlowQuery] = {}
MAX_QUERIES = 4096
MAX_QUERY_LENGTH = 1024


def parse_query(request: web.Request) -> FlowQuery:
    # Keyed by the raw (still percent-encoded) string: decoding first could make two
    # different queries one key ("a=b%26c=d" and "a=b&c=d").
    raw = request.rel_url.raw_query_string
    known = _QUERIES.get(raw)
    if known is not None:
        return known
    try:
        query = msgspec.convert(dict(request.query), FlowQuery)
    except msgspec.ValidationError as exc:
        raise BadRequest.from_validation(exc) from exc
    if len(raw) <= MAX_QUERY_LENGTH:
        if len(_QUERIES) >= MAX_QUERIES:
            _QUERIES.clear()
        _QUERIES[raw] = query  # FlowQuery is frozen: safe to share between requests
    return query


def device_id_hex(raw: bytes) -> str:
    """16 random bytes as a version-4 UUID in 32 hex digits, FxA's deviceId (uuid.v4()
    without dashes), without building a UUID object."""
    data = bytearray(raw)
    data[6] = data[6] & 0x0F | 0x40  # version 4
    data[8] = data[8] & 0x3F | 0x80  # the RFC 4122 variant
    return data.hex()


def cors_headers(origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    if origin is None or origin not in allowed:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def get_metrics_flow(request: web.Request) -> web.StreamResponse:
    app = request.app
    stats, settings = app[STATS], app[SETTINGS]
    await check_capacity(app)
    query = parse_query(request)
    origin = request.headers.get("Origin")
    headers = cors_headers(origin, app[ALLOWED_ORIGINS])
    engage = query.event_type == "engage"
    if origin is not None and not headers and not engage:
        log.info("request.metrics-flow.bad-origin %s", origin)
        stats.incr("metrics_flow.bad_origin")
        raise Forbidden("origin not allowed", "$.headers.origin", "bad_origin")

    # One getrandom(2) for the flow id's salt and the device id.
    randomness = os.urandom(32)
    flow_id, begin = app[SIGNER].create(salt=randomness[:16])
    device_id = device_id_hex(randomness[16:])
    req = request_info(request, settings.server.trusted_proxies)
    if not engage:
        start = (query, flow_id, begin, device_id, req)
        if settings.spool.strict:
            # The answer promises the records are on disk.
            await accept(app, app[DEFERRED].begin(*start))
        else:
            app[DEFERRED].add_start(start)
        stats.incr("metrics_flow.begin")
    elif not headers:
        stats.incr("metrics_flow.engage.dropped", 1, {"reason": "bad_origin"})
    elif query.service not in settings.flow.clients:
        stats.incr("metrics_flow.engage.dropped", 1, {"reason": "unknown_client"})
    elif query.uid is None:
        stats.incr("metrics_flow.engage.dropped", 1, {"reason": "missing_uid"})
    else:
        pipeline = app[PIPELINE]
        batch = pipeline.engage(query, flow_id, begin, device_id, req)
        await accept(app, app[TAP].request(pipeline, "/metrics-flow", ("flow.rp.engage",), batch))
        stats.incr("metrics_flow.engage")
    body = {"deviceId": device_id, "flowBeginTime": begin, "flowId": flow_id}
    cors = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    return Answer(_json.encode(body), headers=cors)


async def options_metrics_flow(request: web.Request) -> web.Response:
    """CORS preflight: only for allowed origins, answered as the `cors` middleware does.

    FxA's get-metrics-flow.js uses `cors({methods: 'GET', origin: allow-list})`, which
    echoes Access-Control-Request-Headers (any header a page asks for) and answers 204.
    """
    origin = request.headers.get("Origin")
    headers = cors_headers(origin, request.app[ALLOWED_ORIGINS])
    if not headers:
        log.info("request.metrics-flow.bad-origin %s", origin)
        request.app[STATS].incr("metrics_flow.bad_origin")
        raise Forbidden("origin not allowed", "$.headers.origin", "bad_origin")
    headers["Access-Control-Allow-Methods"] = "GET"
    requested = request.headers.get("Access-Control-Request-Headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
        headers["Vary"] = "Origin, Access-Control-Request-Headers"
    max_age = request.app[SETTINGS].flow.cors_max_age_seconds
    if max_age:
        headers["Access-Control-Max-Age"] = str(max_age)
    return web.Response(status=204, headers=headers)
