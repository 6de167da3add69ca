"""The OpenAPI 3.1 contract of every endpoint, built from the msgspec Structs the router uses.

Request schemas come from the Structs the handlers decode with (`router/events.py`),
response schemas from the Structs below (and the tap's lines in `router/watching/tap.py`), so
the document cannot describe a field the decoder does not know. It is served at
`/__openapi__` and written to `docs/openapi.json` by `metrics-router openapi`; a test
fails when the two drift, and schemathesis holds the running router to it.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import msgspec
from msgspec import Struct

from .. import __version__
from ..events import (
    EVENT_TYPE,
    EXPERIMENT_NAME,
    NEWSLETTER,
    SYNC_ENGINE,
    FlowQuery,
    MetricsBody,
    PropagateBody,
    ServerEventBatch,
    StashBody,
    _checked_fields,
)
from ..records import KINDS
from .tap import TapLine

REF = "#/components/schemas/{name}"


# -- response bodies ----------------------------------------------------------------------------


class Validation(Struct):
    keys: list[str]


class Error(Struct, kw_only=True):
    """Every 4xx/5xx body; `validation.keys` names the failing field (`$.events[3].offset`)."""

    error: str
    message: str
    statusCode: int
    validation: Validation | None = None


class FlowStarted(Struct):
    deviceId: str
    flowBeginTime: int
    flowId: str


class Success(Struct):
    success: bool


class Accepted(Struct):
    success: bool
    accepted: int


class Stored(Struct):
    stored: bool


class Propagated(Struct):
    propagated: bool


class Version(Struct):
    version: str
    commit: str
    source: str


class Heartbeat(Struct):
    status: str
    checks: dict[str, str]


# -- the document ------------------------------------------------------------------------------


def ecma_pattern(pattern: str) -> str:
    """A pattern of `router/events.py` (Python, ASCII, `\\Z`) in ECMA 262, JSON Schema's."""
    out = pattern.removeprefix("(?a)")
    if out.endswith(r"\Z"):
        out = out[:-2] + "$"
    # ASCII \s, spelt out: ECMA's \s also takes Unicode spaces.
    return out.replace(r"\s", r"\t\n\v\f\r ")


def _ecma_patterns(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                node[key] = ecma_pattern(value)
            else:
                _ecma_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _ecma_patterns(item)


def _add_checked_patterns(schemas: dict[str, Any]) -> None:
    """`POST /metrics` checks some patterns after decoding (`events.Checked`): document them."""
    for name, checked in _checked_fields(MetricsBody):
        for branch in schemas["MetricsBody"]["properties"][name].get("anyOf", []):
            if branch.get("type") == "string":
                branch["pattern"] = checked.pattern
    schemas["Event"]["properties"]["type"]["pattern"] = EVENT_TYPE.pattern
    body = schemas["MetricsBody"]["properties"]
    body["syncEngines"]["items"]["pattern"] = SYNC_ENGINE.pattern
    for branch in body["newsletters"]["anyOf"]:
        if branch.get("type") == "array":
            branch["items"]["pattern"] = NEWSLETTER.pattern
    for name in ("choice", "group"):
        schemas["Experiment"]["properties"][name]["pattern"] = EXPERIMENT_NAME.pattern


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Optional query parameters as OpenAPI parameters (null: the parameter is left out)."""
    params = []
    for name, prop in schema["properties"].items():
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        (value,) = branches
        value = {k: v for k, v in value.items() if k != "default"}
        params.append({"name": name, "in": "query", "required": False, "schema": value})
    return params


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(name=ref)}}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    what = {
        400: "Bad input: `validation.keys` names the failing field",
        401: "Missing or wrong bearer token",
        403: "Origin not allowed",
        413: "Body larger than `[server] max_body_bytes`",
        503: "A sink cannot keep more work: retry after `Retry-After` seconds",
    }
    out = {str(s): _json("Error", what[s]) for s in statuses}
    if 503 in statuses:
        out["503"]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return out


def _post(body: str, ok: str, summary: str, *errors: int, secure: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(name=body)}}},
        },
        "responses": {"200": _json(ok, "Accepted"), **_errors(*errors)},
    }
    if secure:
        op["security"] = [{"sidecar": []}]
    return op


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


@cache
def _document() -> dict[str, Any]:
    structs = [
        MetricsBody,
        FlowQuery,
        ServerEventBatch,
        StashBody,
        PropagateBody,
        Error,
        FlowStarted,
        Success,
        Accepted,
        Stored,
        Propagated,
        Version,
        Heartbeat,
        TapLine,
    ]
    _, schemas = msgspec.json.schema_components(structs, ref_template=REF)
    _add_checked_patterns(schemas)
    _ecma_patterns(schemas)
    flow_query = schemas.pop("FlowQuery")
    tap_line = msgspec.json.schema_components([TapLine], ref_template=REF)[0][0]
    origin = {
        "name": "Origin",
        "in": "header",
        "required": False,
        "description": "Must be on `[flow] allowed_origins` when given",
        "schema": {"type": "string"},
    }
    paths: dict[str, Any] = {
        "/metrics-flow": {
            "get": {
                "summary": "Start a flow (a signed flow id), or a relying party's engage ping",
                "parameters": [*_query_parameters(flow_query), origin],
                "responses": {"200": _json("FlowStarted", "A new flow"), **_errors(400, 403, 503)},
            },
            "options": {
                "summary": "CORS preflight: answered for allowed origins only",
                "parameters": [{**origin, "required": True}],
                "responses": {
                    "204": {
                        "description": "The origin is allowed",
                        "headers": {
                            "Access-Control-Allow-Origin": {"schema": {"type": "string"}},
                            "Access-Control-Allow-Methods": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(403),
                },
            },
        },
        "/metrics": {
            "post": _post(
                "MetricsBody",
                "Success",
                "A batch of browser events (also sent as text/plain by sendBeacon)",
                400,
                413,
                503,
            ),
        },
        "/sidecar/events": {
            "post": _post(
                "ServerEventBatch", "Accepted", "Server-side events", 400, 401, 413, secure=True
            ),
        },
        "/sidecar/context": {
            "post": _post(
                "StashBody", "Stored", "Stash a metrics context (add-only)", 400, 401, secure=True
            ),
        },
        "/sidecar/context/propagate": {
            "post": _post(
                "PropagateBody",
                "Propagated",
                "Copy one token's metrics context to another",
                400,
                401,
                secure=True,
            ),
        },
        "/__version__": {
            "get": {"summary": "Dockerflow version", "responses": {"200": _json("Version", "")}},
        },
        "/__heartbeat__": {
            "get": {
                "summary": "Every sink and the metrics-context store answer",
                "responses": {
                    "200": _json("Heartbeat", "Healthy"),
                    "503": _json("Heartbeat", "A check failed"),
                },
            },
        },
        "/__lbheartbeat__": {
            "get": {
                "summary": "The process is up",
                "responses": {"200": {"description": "Always"}},
            },
        },
        "/__stats__": {
            "get": {
                "summary": "Every counter and gauge (Prometheus text format, summed over workers)",
                "responses": {"200": _text("Prometheus text exposition format 0.0.4")},
            },
        },
        "/__openapi__": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            },
        },
        "/__tap__": {
            "get": {
                "summary": "Stream what the router does with each event (`metrics-router tap`)",
                "description": (
                    "NDJSON, one TapLine a line, until the client disconnects. The first line"
                    " is `hello` (every worker is then subscribed); `dropped` lines say how"
                    " many lines this subscriber missed so far because it read too slowly."
                ),
                "security": [{"admin": []}],
                "parameters": [
                    _param("event", "Only incoming events whose name matches this glob"),
                    _param("sink", "Only records for this sink"),
                    {
                        "name": "kind",
                        "in": "query",
                        "required": False,
                        "description": "Only records of this kind",
                        "schema": {"enum": list(KINDS)},
                    },
                    {
                        "name": "rejected",
                        "in": "query",
                        "required": False,
                        "description": "1: only refused requests (reason and field path)",
                        "schema": {"enum": ["0", "1", "true", "false"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A stream of TapLine",
                        "content": {"application/x-ndjson": {"schema": tap_line}},
                    },
                    **_errors(400, 401),
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "metrics-router",
            "version": __version__,
            "description": "Firefox Accounts' metrics endpoints, reimplemented as one service.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "sidecar": {"type": "http", "scheme": "bearer", "description": "[sidecar] token"},
                "admin": {"type": "http", "scheme": "bearer", "description": "[admin] token"},
            },
        },
    }


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "maxLength": 256},
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a copy: callers may change it)."""
    return copy.deepcopy(_document())


@cache
def document_bytes() -> bytes:
    """The document as `/__openapi__` serves it and `docs/openapi.json` holds it."""
    return (json.dumps(_document(), indent=2, sort_keys=False) + "\n").encode()
