"""Outgoing records: what the pipeline hands to sinks.

Records are immutable once built; sub-dicts (user_properties, event_properties)
may be shared between the records of one batch and must be treated as read-only.
Records never form reference cycles, so the garbage collector does not track them
(`gc=False`): building hundreds of thousands a second then triggers no collections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from msgspec import Struct


class AmplitudeEvent(Struct, omit_defaults=True, kw_only=True, gc=False):
    """One Amplitude HTTP API event, before the delivery sink hashes ids."""

    event_type: str
    time: int
    user_id: str | None = None
    device_id: str | None = None
    session_id: int | None = None
    app_version: str | None = None
    language: str | None = None
    country: str | None = None
    region: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    device_model: str | None = None
    event_properties: dict[str, Any] = msgspec.field(default_factory=dict)
    user_properties: dict[str, Any] = msgspec.field(default_factory=dict)
    insert_id: str | None = None


class FlowEvent(Struct, omit_defaults=True, kw_only=True, gc=False):
    """A flow event log record (FxA's `flowEvent`)."""

    event: str
    flow_id: str
    flow_time: int
    time: int
    context: str | None = None
    entrypoint: str | None = None
    service: str | None = None
    locale: str | None = None
    userAgent: str | None = None
    country: str | None = None
    countryCode: str | None = None
    region: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_medium: str | None = None
    utm_source: str | None = None


class VwoConversion(Struct, omit_defaults=True, kw_only=True, gc=False):
    """A conversion for VWO's trackEvent: the metric identifier and who converted."""

    name: str
    user_id: str
    time: int
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    user_agent: str | None = None
    ip: str | None = None


class ActivityEvent(Struct, omit_defaults=True, kw_only=True, gc=False):
    """An auth-server activity event (FxA's `activityEvent` log line)."""

    event: str
    uid: str
    device_id: str | None = None
    service: str | None = None
    userAgent: str | None = None
    country: str | None = None
    region: str | None = None


class ClientMetrics(Struct, kw_only=True, gc=False):
    """A sampled user's batch as FxA's `client.metrics` line describes it.

    Built like FxA's metrics-collector-stderr.js toLoggableEvent: a whitelist of body
    fields ("unknown" when absent), the event types and offsets, the screen size.
    """

    time: str
    lang: Any = "unknown"
    agent: str | None = None  # the User-Agent header; absent: left out, as there
    duration: Any = "unknown"
    context: Any = "unknown"
    service: Any = "unknown"
    marketingLink: Any = "unknown"
    marketingType: Any = "unknown"
    marketingClicked: Any = "unknown"
    events: list[str] = msgspec.field(default_factory=list)
    event_durations: list[int] = msgspec.field(default_factory=list)
    screen_width: float | str | None = None
    screen_height: float | str | None = None


Record = AmplitudeEvent | FlowEvent | VwoConversion | ActivityEvent | ClientMetrics

# -- kinds: the one definition of "which kind of record is this" ---------------------------

Kind = Literal["amplitude", "flow", "vwo", "activity", "client_metrics"]
# In the order a sink taking several kinds gets a request's records.
TYPES: dict[Kind, type[Record]] = {
    "flow": FlowEvent,
    "amplitude": AmplitudeEvent,
    "vwo": VwoConversion,
    "activity": ActivityEvent,
    "client_metrics": ClientMetrics,
}
KINDS: tuple[Kind, ...] = tuple(TYPES)
_KIND_OF: dict[type[Any], Kind] = {tp: kind for kind, tp in TYPES.items()}


def kind_of(record: object) -> Kind | None:
    """The kind of a record, None for anything else (an Identify call, a raw message)."""
    return _KIND_OF.get(type(record))


class RecordBatch(Struct, gc=False):
    """All the records one request produced, by kind."""

    amplitude: list[AmplitudeEvent] = msgspec.field(default_factory=list)
    flow: list[FlowEvent] = msgspec.field(default_factory=list)
    vwo: list[VwoConversion] = msgspec.field(default_factory=list)
    activity: list[ActivityEvent] = msgspec.field(default_factory=list)
    client_metrics: list[ClientMetrics] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.amplitude)
            + len(self.flow)
            + len(self.vwo)
            + len(self.activity)
            + len(self.client_metrics)
        )


# -- the batch codec: spool rows, bus messages ------------------------------------------------
#
# A batch is encoded as runs of records of one kind, each run tagged with its kind
# (msgspec's tagged unions, as in its examples/asyncio-kv). The tag lives on the run,
# not on the records, so the records stay the tag-free Structs the sinks send.


class AmplitudeRun(Struct, tag="amplitude", array_like=True, gc=False):
    records: list[AmplitudeEvent]


class FlowRun(Struct, tag="flow", array_like=True, gc=False):
    records: list[FlowEvent]


class VwoRun(Struct, tag="vwo", array_like=True, gc=False):
    records: list[VwoConversion]


class ActivityRun(Struct, tag="activity", array_like=True, gc=False):
    records: list[ActivityEvent]


class ClientMetricsRun(Struct, tag="client_metrics", array_like=True, gc=False):
    records: list[ClientMetrics]


Run = AmplitudeRun | FlowRun | VwoRun | ActivityRun | ClientMetricsRun
_RUNS: dict[type[Any], type[Run]] = {
    AmplitudeEvent: AmplitudeRun,
    FlowEvent: FlowRun,
    VwoConversion: VwoRun,
    ActivityEvent: ActivityRun,
    ClientMetrics: ClientMetricsRun,
}


class _LegacyChunk(Struct, array_like=True, omit_defaults=True):
    """Spool rows written before the tagged runs: one list per kind."""

    amplitude: list[AmplitudeEvent] = msgspec.field(default_factory=list)
    flow: list[FlowEvent] = msgspec.field(default_factory=list)
    vwo: list[VwoConversion] = msgspec.field(default_factory=list)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Run])
_legacy = msgspec.msgpack.Decoder(_LegacyChunk)


def encode_batch(records: Sequence[Record]) -> bytes:
    """Records in order as msgpack; raises TypeError for anything that is not a Record."""
    runs: list[Run] = []
    current: list[Any] = []
    current_type: type[Any] | None = None
    for record in records:
        tp = type(record)
        if tp is not current_type:
            run_type = _RUNS.get(tp)
            if run_type is None:
                raise TypeError(f"not a record: {tp.__name__}")
            current = []
            runs.append(run_type(current))
            current_type = tp
        current.append(record)
    return _encoder.encode(runs)


def decode_batch(blob: bytes) -> list[Record]:
    """The records of `encode_batch`; raises msgspec.DecodeError / ValidationError."""
    try:
        runs = _decoder.decode(blob)
    except msgspec.ValidationError:
        chunk = _legacy.decode(blob)
        return [*chunk.amplitude, *chunk.flow, *chunk.vwo]
    if len(runs) == 1:
        return list(runs[0].records)
    return [record for run in runs for record in run.records]
