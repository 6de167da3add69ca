"""Inbound wire formats: the bodies and queries browsers send, as msgspec Structs.

Patterns and bounds follow FxA's content-server validation; the decoder's error
message carries the `$.path` of the failing field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

NONE: Literal["none"] = "none"

Str = Annotated[str, Meta(max_length=1024)]
Offset = Annotated[int, Meta(ge=0)]
Hex32OrNone = Annotated[str, Meta(pattern=r"^(?:[0-9a-f]{32}|none)$")]
FlowId = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{64}$")]
EventType = Annotated[str, Meta(max_length=1024, pattern=r"^[\w\s.:-]+$")]
Entrypoint = Annotated[str, Meta(max_length=1024, pattern=r"^[\w.:-]+$")]
Utm = Annotated[str, Meta(max_length=128, pattern=r"^[\w/.%-]+$")]
Context = Annotated[str, Meta(max_length=1024, pattern=r"^[0-9a-z_-]+$")]
Service = Annotated[str, Meta(pattern=r"^(?:sync|content-server|none|[0-9a-f]{16})$")]
Broker = Annotated[str, Meta(max_length=1024, pattern=r"^[0-9a-z-]+$")]
Lang = Annotated[str, Meta(max_length=1024, pattern=r"^[a-z]+(?:-[A-Za-z]+)?$")]
UniqueUserId = Annotated[str, Meta(pattern=r"^(?:[0-9a-fA-F-]{36}|none)$")]
InitialView = Annotated[str, Meta(max_length=1024, pattern=r"^[0-9a-z._-]+$")]
Dimension = Annotated[float, Meta(ge=0)] | Literal["none"]
SyncEngine = Annotated[str, Meta(max_length=64, pattern=r"^[a-z]+$")]
ExperimentGroup = Annotated[str, Meta(max_length=1024, pattern=r"^[\w.-]+$")]
Choice = Annotated[str, Meta(max_length=1024, pattern=r"^[\w.-]+$")]
ProductId = Annotated[str, Meta(pattern=r"^prod_[0-9A-Za-z]+$")]
FormType = Literal["email", "other", "button", "subscribe"]
Uid = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]


class Event(Struct, frozen=True, array_like=False):
    type: EventType
    offset: Offset


class Experiment(Struct, frozen=True):
    choice: Choice
    group: ExperimentGroup


class Marketing(Struct, frozen=True):
    campaignId: Annotated[str, Meta(max_length=1024, pattern=r"^[0-9a-z_-]+$")]
    clicked: bool
    url: Str


class Screen(Struct, frozen=True):
    width: Dimension = NONE
    height: Dimension = NONE
    clientWidth: Dimension = NONE
    clientHeight: Dimension = NONE
    devicePixelRatio: Dimension = NONE


# Navigation timing values are numbers; typing them stops deep-nesting payloads.
NavigationTiming = dict[Annotated[str, Meta(max_length=64)], float | None]


class MetricsBody(Struct, kw_only=True):
    """`POST /metrics`: one batch of browser events."""

    events: Annotated[list[Event], Meta(max_length=100_000)]
    flowId: FlowId | None = None
    flowBeginTime: Offset | None = None
    deviceId: Hex32OrNone | None = None
    startTime: Offset = 0
    flushTime: Offset = 0
    duration: Offset = 0
    broker: Broker | None = None
    context: Context | None = None
    service: Service | None = None
    lang: Lang | None = None
    isSampledUser: bool = False
    uid: Hex32OrNone | None = None
    uniqueUserId: UniqueUserId | None = None
    initialView: InitialView | None = None
    entrypoint: Entrypoint | None = None
    entryPoint: Entrypoint | None = None
    entrypoint_experiment: Entrypoint | None = None
    entrypoint_variation: Entrypoint | None = None
    utm_campaign: Utm | None = None
    utm_content: Utm | None = None
    utm_medium: Utm | None = None
    utm_source: Utm | None = None
    utm_term: Utm | None = None
    experiments: Annotated[list[Experiment], Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    marketing: Annotated[list[Marketing], Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    screen: Screen | None = None
    referrer: Annotated[str, Meta(max_length=2048)] | None = None
    emailDomain: Str | None = None
    syncEngines: Annotated[list[SyncEngine], Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    planId: Str | None = None
    productId: Str | None = None
    plan_id: Str | None = None
    product_id: Str | None = None
    navigationTiming: NavigationTiming | None = None
    numStoredAccounts: Offset | None = None


class FlowQuery(Struct, kw_only=True):
    """`GET /metrics-flow` query parameters (all optional)."""

    entrypoint: Entrypoint | None = None
    entrypoint_experiment: Entrypoint | None = None
    entrypoint_variation: Entrypoint | None = None
    form_type: FormType | None = None
    product_id: ProductId | None = None
    service: Service | None = None
    context: Context | None = None
    utm_source: Utm | None = None
    utm_campaign: Utm | None = None
    utm_content: Utm | None = None
    utm_medium: Utm | None = None
    utm_term: Utm | None = None
    # Relying-party engage ping.
    event_type: Literal["engage"] | None = None
    uid: Uid | None = None


metrics_body_decoder = msgspec.json.Decoder(MetricsBody)


# -- sidecar: server-side events from back-end services ------------------------------------

Hex32 = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
TokenId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z_-]+$")]
ServerEventName = Annotated[str, Meta(max_length=256, pattern=r"^[\w.:-]+$")]
FlowType = Annotated[str, Meta(max_length=64, pattern=r"^\w+$")]
AttributeName = Annotated[str, Meta(max_length=64)]
AttributeValue = Annotated[str, Meta(max_length=1024)] | int | float | bool | None


class MetricsContext(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """FxA's metricsContext; `flowType` (our addition) names the flow a complete signal ends."""

    flowId: FlowId | None = None
    flowBeginTime: Offset | None = None
    deviceId: Hex32 | None = None
    entrypoint: Entrypoint | None = None
    entrypointExperiment: Entrypoint | None = None
    entrypointVariation: Entrypoint | None = None
    utmCampaign: Utm | None = None
    utmContent: Utm | None = None
    utmMedium: Utm | None = None
    utmSource: Utm | None = None
    utmTerm: Utm | None = None
    productId: Str | None = None
    planId: Str | None = None
    flowType: FlowType | None = None

    def __post_init__(self) -> None:
        if (self.flowId is None) != (self.flowBeginTime is None):
            raise ValueError("flowId and flowBeginTime must be given together")


class ServerEvent(Struct, kw_only=True, forbid_unknown_fields=True):
    """One event a back-end service reports for a user and the token it used."""

    event: ServerEventName
    uid: Hex32 | None = None
    device_id: Hex32 | None = None
    service: Service | None = None
    token_id: TokenId | None = None
    # ms since the epoch; default: when the router received it.
    time: Offset | None = None
    # The end user's User-Agent, when the service has it (Amplitude os/browser fields).
    user_agent: Annotated[str, Meta(max_length=1024)] | None = None
    metrics_context: MetricsContext | None = None
    attributes: Annotated[dict[AttributeName, AttributeValue], Meta(max_length=64)] = msgspec.field(
        default_factory=dict
    )


class ServerEventBatch(Struct, kw_only=True, forbid_unknown_fields=True):
    events: Annotated[list[ServerEvent], Meta(min_length=1, max_length=10_000)]


class StashBody(Struct, kw_only=True, forbid_unknown_fields=True):
    uid: Hex32
    token_id: TokenId
    metrics_context: MetricsContext


class PropagateBody(Struct, kw_only=True, forbid_unknown_fields=True):
    uid: Hex32
    from_token_id: TokenId
    to_token_id: TokenId


def present(value: Any) -> Any:
    """FxA's `none` means absent everywhere; so does an empty string."""
    if value is None or value == NONE or value == "":
        return None
    return value
