"""The log sinks' output lines as msgspec Structs: the mozlog envelope and FxA's own formats.

Kept apart from log.py and fxa_format.py, which may be compiled with mypyc: a compiled
module drops class keywords (`omit_defaults=True`, `kw_only=True`, `gc=False`) without a
word, so a Struct defined there would encode differently. This module is never compiled.
"""

from __future__ import annotations

from typing import Any

import msgspec


class MozLogLine(msgspec.Struct, gc=False):
    Timestamp: int
    Logger: str
    Type: str
    Hostname: str
    Pid: int
    EnvVersion: str
    Severity: int
    Fields: Any


class FxaFlowLine(msgspec.Struct, omit_defaults=True, kw_only=True):
    """logFlowEvent's object, in its key order (JSON.stringify drops undefined values)."""

    country: str | None = None
    countryCode: str | None = None
    event: str
    flow_id: str
    flow_time: int
    hostname: str
    locale: str | None = None
    op: str
    pid: int
    region: str | None = None
    userAgent: str | None = None
    v: int
    time: int
    context: str | None = None
    entrypoint: str | None = None
    service: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_medium: str | None = None
    utm_source: str | None = None


class ClientMetricsLine(msgspec.Struct, omit_defaults=True, kw_only=True):
    """toLoggableEvent's object, in its key order."""

    time: str
    op: str
    hostname: str
    pid: int
    v: int
    lang: Any
    agent: str | None = None
    duration: Any
    context: Any
    service: Any
    marketingLink: Any
    marketingType: Any
    marketingClicked: Any
    events: list[str]
    event_durations: list[int]
    screen_width: Any = msgspec.field(default=None, name="screen.width")
    screen_height: Any = msgspec.field(default=None, name="screen.height")
