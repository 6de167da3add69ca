"""Turning validated input into outgoing records: flow events, Amplitude events, VWO conversions.

subject.py   RequestInfo (what HTTP knows of a request), Subject (what its body says)
builder.py   RecordBuilder: the shared per-request parts, one event's records, browsers' requests
server.py    Pipeline: the builder plus back-end events (`POST /sidecar/events`)
"""

from __future__ import annotations

from .builder import FLOW_BEGIN, FLOW_COMPLETE, FORM_TYPES, RecordBuilder
from .server import MISSING_CONTEXT, Pipeline
from .subject import LOG_LIMIT, RequestInfo, ServerItem, Subject, to_snake_case

__all__ = [
    "FLOW_BEGIN",
    "FLOW_COMPLETE",
    "FORM_TYPES",
    "LOG_LIMIT",
    "MISSING_CONTEXT",
    "Pipeline",
    "RecordBuilder",
    "RequestInfo",
    "ServerItem",
    "Subject",
    "to_snake_case",
]
