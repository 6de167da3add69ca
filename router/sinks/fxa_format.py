"""`[sinks.log] format = "fxa"`: the lines FxA's own servers write, for its importers.

- flow events: one bare JSON object a line (content server `flow-event.js`
  logFlowEvent): `op: "flowEvent"`, `v: 1`, `hostname`, `pid` and the event's fields;
  no mozlog envelope.
- Amplitude events: mozlog lines of Type `amplitudeEvent` whose Fields start with
  `op: "amplitudeEvent"` (`fxa-shared/metrics/amplitude.ts` puts `op` in the event;
  mozlog's heka formatter serialises nested objects as JSON strings).
- activity events: mozlog `activityEvent` lines (auth server `log.activityEvent`).
- sampled users: `client.metrics` lines (`metrics-collector-stderr.js`), written by
  the `client_metrics` sink, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from ..records import AmplitudeEvent, ClientMetrics, FlowEvent, Record
from .lines import ClientMetricsLine, FxaFlowLine

FLOW_VERSION = 1  # fxa-shared metrics/flow-performance VERSION
CLIENT_METRICS_VERSION = 1  # metrics-collector-stderr.js VERSION

Head = Callable[[str], bytes]
_AMPLITUDE_OP = b'{"op":"amplitudeEvent",'


def flow_line(record: FlowEvent, hostname: str, pid: int) -> FxaFlowLine:
    return FxaFlowLine(
        country=record.country,
        countryCode=record.countryCode,
        event=record.event,
        flow_id=record.flow_id,
        flow_time=record.flow_time,
        hostname=hostname,
        locale=record.locale,
        op="flowEvent",
        pid=pid,
        region=record.region,
        userAgent=record.userAgent,
        v=FLOW_VERSION,
        time=record.time,
        context=record.context,
        entrypoint=record.entrypoint,
        service=record.service,
        utm_campaign=record.utm_campaign,
        utm_content=record.utm_content,
        utm_medium=record.utm_medium,
        utm_source=record.utm_source,
    )


def client_metrics_line(record: ClientMetrics, hostname: str, pid: int) -> ClientMetricsLine:
    return ClientMetricsLine(
        time=record.time,
        op="client.metrics",
        hostname=hostname,
        pid=pid,
        v=CLIENT_METRICS_VERSION,
        lang=record.lang,
        agent=record.agent,
        duration=record.duration,
        context=record.context,
        service=record.service,
        marketingLink=record.marketingLink,
        marketingType=record.marketingType,
        marketingClicked=record.marketingClicked,
        events=record.events,
        event_durations=record.event_durations,
        screen_width=record.screen_width,
        screen_height=record.screen_height,
    )


class FxaLines:
    """Encodes records as FxA writes them; `head(kind)` starts the sink's mozlog envelope."""

    def __init__(self, hostname: str, pid: int, mozlog: Callable[[Record], tuple[str, Any]]):
        self.hostname = hostname
        self.pid = pid
        # The log sink's mozlog (Type, Fields) of a record, for what FxA writes as mozlog.
        self.mozlog = mozlog
        self._encode = msgspec.json.Encoder().encode

    def encode(self, records: Sequence[Record], head: Head) -> bytes:
        encode = self._encode
        heads: dict[str, bytes] = {}
        parts: list[bytes] = []
        append = parts.append
        for record in records:
            if isinstance(record, FlowEvent):
                append(encode(flow_line(record, self.hostname, self.pid)))
                append(b"\n")
                continue
            kind, fields = self.mozlog(record)
            start = heads.get(kind)
            if start is None:
                start = heads[kind] = head(kind)
            append(start)
            if isinstance(record, AmplitudeEvent):
                # The mozlog Fields with `op` first, as amplitude.ts builds the event.
                append(_AMPLITUDE_OP)
                append(encode(fields)[1:])
            else:
                append(encode(fields))
            append(b"}\n")
        return b"".join(parts)
