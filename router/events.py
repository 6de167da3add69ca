r"""Inbound wire formats: the bodies and queries browsers send, as msgspec Structs.

Patterns and bounds follow FxA's content-server validation; the decoder's error
message carries the `$.path` of the failing field. FxA's patterns are JavaScript
regexes: `\w` is ASCII only and `$` is the end of the text, so ours are `(?a)...\Z`
(Python's `$` also matches before a final newline; `router/watching/openapi.py` writes them
back in JavaScript's dialect for the OpenAPI document).

`POST /metrics` bodies are the hot path: their string patterns are `Checked` after
decoding instead of by the decoder, so a value seen before (the same flow id, utm
source or event name in batch after batch) costs a set lookup, not a regex run.
"""

from __future__ import annotations

import operator
import re
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from .errors import BadRequest

NONE: Literal["none"] = "none"


class Checked:
    """A pattern checked after decoding, once per distinct value (the memo is bounded)."""

    # Bounded twice: few values, and short ones only (a flood of distinct 1 KiB values
    # must not cost memory: 10 000 x 128 bytes per pattern at most).
    MAX_REMEMBERED = 10_000
    MAX_LENGTH = 128

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._search = re.compile(pattern).search
        self.seen: set[str] = set()

    def check(self, value: str, path: str) -> None:
        """Raise BadRequest naming `path` unless `value` matches (msgspec's wording)."""
        if value in self.seen:
            return
        if self._search(value) is None:
            raise BadRequest(
                f"Expected `str` matching regex {self.pattern!r} - at `{path}`", path, "schema"
            )
        if len(value) > self.MAX_LENGTH:
            return
        if len(self.seen) >= self.MAX_REMEMBERED:
            self.seen.clear()  # hostile floods of distinct values: start over, stay bounded
        self.seen.add(value)


Str = Annotated[str, Meta(max_length=1024)]
Offset = Annotated[int, Meta(ge=0)]
Hex32OrNone = Annotated[str, Meta(pattern=r"(?a)^(?:[0-9a-f]{32}|none)\Z")]
FlowId = Annotated[str, Meta(pattern=r"(?a)^[0-9a-fA-F]{64}\Z")]
Entrypoint = Annotated[str, Meta(max_length=1024, pattern=r"(?a)^[\w.:-]+\Z")]
Utm = Annotated[str, Meta(max_length=128, pattern=r"(?a)^[\w/.%-]+\Z")]
# FxA's validation.js: UTM_CAMPAIGN = UTM.allow('page+referral+-+not+part+of+a+campaign').
_UTM_CAMPAIGN = r"(?a)^(?:[\w/.%-]+|page\+referral\+-\+not\+part\+of\+a\+campaign)\Z"
UtmCampaign = Annotated[str, Meta(max_length=128, pattern=_UTM_CAMPAIGN)]
Context = Annotated[str, Meta(max_length=1024, pattern=r"(?a)^[0-9a-z_-]+\Z")]
Service = Annotated[str, Meta(pattern=r"(?a)^(?:sync|content-server|none|[0-9a-f]{16})\Z")]
Broker = Annotated[str, Meta(max_length=1024, pattern=r"(?a)^[0-9a-z-]+\Z")]
Lang = Annotated[str, Meta(max_length=1024, pattern=r"(?a)^[a-z]+(?:-[A-Za-z]+)?\Z")]
UniqueUserId = Annotated[str, Meta(pattern=r"(?a)^(?:[0-9a-fA-F-]{36}|none)\Z")]
InitialView = Annotated[str, Meta(max_length=1024, pattern=r"(?a)^[0-9a-z._-]+\Z")]
Dimension = Annotated[float, Meta(ge=0)] | Literal["none"]
# Checked after decoding (SYNC_ENGINE, EXPERIMENT_NAME below): a regex run per list item
# was a third of a 1-event body's decoding.
SyncEngine = Annotated[str, Meta(max_length=64)]
ExperimentGroup = Annotated[str, Meta(max_length=1024)]
Choice = Annotated[str, Meta(max_length=1024)]
ProductId = Annotated[str, Meta(pattern=r"(?a)^prod_[0-9A-Za-z]+\Z")]
FormType = Literal["email", "other", "button", "subscribe"]
Uid = Annotated[str, Meta(pattern=r"(?a)^[0-9a-f]{32}\Z")]


# The same patterns, checked after decoding (see `Checked`).
CheckedHex32OrNone = Annotated[str, Meta(max_length=32), Checked(r"(?a)^(?:[0-9a-f]{32}|none)\Z")]
CheckedFlowId = Annotated[str, Meta(max_length=64), Checked(r"(?a)^[0-9a-fA-F]{64}\Z")]
CheckedEntrypoint = Annotated[str, Meta(max_length=1024), Checked(r"(?a)^[\w.:-]+\Z")]
CheckedUtm = Annotated[str, Meta(max_length=128), Checked(r"(?a)^[\w/.%-]+\Z")]
CheckedUtmCampaign = Annotated[str, Meta(max_length=128), Checked(_UTM_CAMPAIGN)]
CheckedContext = Annotated[str, Meta(max_length=1024), Checked(r"(?a)^[0-9a-z_-]+\Z")]
CheckedService = Annotated[
    str, Meta(max_length=64), Checked(r"(?a)^(?:sync|content-server|none|[0-9a-f]{16})\Z")
]
CheckedBroker = Annotated[str, Meta(max_length=1024), Checked(r"(?a)^[0-9a-z-]+\Z")]
CheckedLang = Annotated[str, Meta(max_length=1024), Checked(r"(?a)^[a-z]+(?:-[A-Za-z]+)?\Z")]
CheckedUniqueUserId = Annotated[
    str, Meta(max_length=36), Checked(r"(?a)^(?:[0-9a-fA-F-]{36}|none)\Z")
]
CheckedInitialView = Annotated[str, Meta(max_length=1024), Checked(r"(?a)^[0-9a-z._-]+\Z")]
EVENT_TYPE = Checked(r"(?a)^[\w\s.:-]+\Z")
# The items of the body's lists (and Experiment's fields), checked after decoding too.
SYNC_ENGINE = Checked(r"(?a)^[a-z]+\Z")
EXPERIMENT_NAME = Checked(r"(?a)^[\w.-]+\Z")  # an experiment's choice and group
NEWSLETTER = Checked(r"(?a)^[\w.-]+\Z")


class Event(Struct, frozen=True, array_like=False, gc=False):
    type: Annotated[str, Meta(max_length=1024)]  # EVENT_TYPE, checked after decoding
    offset: Offset


class Experiment(Struct, frozen=True):
    choice: Choice
    group: ExperimentGroup


class Marketing(Struct, frozen=True):
    campaignId: Annotated[str, Meta(max_length=1024, pattern=r"(?a)^[0-9a-z_-]+\Z")]
    clicked: bool
    url: Str


class Screen(Struct, frozen=True):
    width: Dimension = NONE
    height: Dimension = NONE
    clientWidth: Dimension = NONE
    clientHeight: Dimension = NONE
    devicePixelRatio: Dimension = NONE


class UserPreferences(Struct, frozen=True, forbid_unknown_fields=True):
    """FxA's USER_PREFERENCES: an object of these three booleans only."""

    account_recovery: bool | None = msgspec.field(default=None, name="account-recovery")
    emails: bool | None = None
    two_step_authentication: bool | None = msgspec.field(
        default=None, name="two-step-authentication"
    )


Newsletter = Annotated[str, Meta(max_length=64)]  # NEWSLETTER, checked after decoding

# Navigation timing values are numbers; typing them stops deep-nesting payloads.
NavigationTiming = dict[Annotated[str, Meta(max_length=64)], float | None]


class MetricsBody(Struct, kw_only=True, gc=False):
    """`POST /metrics`: one batch of browser events (check with `check_patterns`)."""

    events: Annotated[list[Event], Meta(max_length=100_000)]
    flowId: CheckedFlowId | None = None
    flowBeginTime: Offset | None = None
    deviceId: CheckedHex32OrNone | None = None
    startTime: Offset = 0
    flushTime: Offset = 0
    duration: Offset = 0
    broker: CheckedBroker | None = None
    context: CheckedContext | None = None
    service: CheckedService | None = None
    lang: CheckedLang | None = None
    isSampledUser: bool = False
    uid: CheckedHex32OrNone | None = None
    uniqueUserId: CheckedUniqueUserId | None = None
    initialView: CheckedInitialView | None = None
    entrypoint: CheckedEntrypoint | None = None
    entryPoint: CheckedEntrypoint | None = None
    entrypoint_experiment: CheckedEntrypoint | None = None
    entrypoint_variation: CheckedEntrypoint | None = None
    utm_campaign: CheckedUtmCampaign | None = None
    utm_content: CheckedUtm | None = None
    utm_medium: CheckedUtm | None = None
    utm_source: CheckedUtm | None = None
    utm_term: CheckedUtm | None = None
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
    newsletters: Annotated[list[Newsletter], Meta(max_length=32)] | None = None
    userPreferences: UserPreferences | None = None


class FlowQuery(Struct, kw_only=True, frozen=True):
    """`GET /metrics-flow` query parameters (all optional)."""

    entrypoint: Entrypoint | None = None
    entrypoint_experiment: Entrypoint | None = None
    entrypoint_variation: Entrypoint | None = None
    form_type: FormType | None = None
    product_id: ProductId | None = None
    service: Service | None = None
    context: Context | None = None
    utm_source: Utm | None = None
    utm_campaign: UtmCampaign | None = None
    utm_content: Utm | None = None
    utm_medium: Utm | None = None
    utm_term: Utm | None = None
    # Relying-party engage ping.
    event_type: Literal["engage"] | None = None
    uid: Uid | None = None


metrics_body_decoder = msgspec.json.Decoder(MetricsBody)


def _checked_fields(cls: type[Struct]) -> tuple[tuple[str, Checked], ...]:
    found = []
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        for arg in (hint, *typing.get_args(hint)):
            checks = [m for m in getattr(arg, "__metadata__", ()) if isinstance(m, Checked)]
            if checks:
                found.append((name, checks[0]))
                break
    return tuple(found)


_BODY_CHECKS = _checked_fields(MetricsBody)


# A page's batches repeat the same values in every checked field but the per-user ids:
# the tuples of those values that passed are kept, so such a body costs one attrgetter
# call and one set lookup instead of a loop over the fields. Bounded: short tuples only
# (a flood of long distinct values must not cost memory), cleared when full.
_ID_FIELDS = frozenset({"flowId", "deviceId", "uid", "uniqueUserId"})
_ID_CHECKS = tuple((n, c) for n, c in _BODY_CHECKS if n in _ID_FIELDS)
_page_values = operator.attrgetter(*(n for n, _ in _BODY_CHECKS if n not in _ID_FIELDS))
_PASSED_PAGES: set[tuple[str | None, ...]] = set()
MAX_PASSED_PAGES = 4096
MAX_PAGE_CHARACTERS = 1024


def check_patterns(body: MetricsBody) -> None:
    """The `Checked` patterns of a decoded body; BadRequest names the first failing field."""
    page = _page_values(body)
    if page in _PASSED_PAGES:
        _check_fields(body, _ID_CHECKS)
    else:
        _check_fields(body, _BODY_CHECKS)
        if sum(len(value) for value in page if value) <= MAX_PAGE_CHARACTERS:
            if len(_PASSED_PAGES) >= MAX_PASSED_PAGES:
                _PASSED_PAGES.clear()
            _PASSED_PAGES.add(page)
    _check_lists(body)


def _check_fields(body: MetricsBody, checks: tuple[tuple[str, Checked], ...]) -> None:
    """The fields of `checks`, in order: the first failing one is the one named."""
    for name, checked in checks:
        value = getattr(body, name)
        # A value seen before costs a set lookup here, not a call.
        if value is not None and value not in checked.seen:
            checked.check(value, f"$.{name}")


def _check_lists(body: MetricsBody) -> None:
    _check_items(SYNC_ENGINE, body.syncEngines, "$.syncEngines")
    names = EXPERIMENT_NAME.seen
    for index, experiment in enumerate(body.experiments):
        if experiment.choice not in names:
            EXPERIMENT_NAME.check(experiment.choice, f"$.experiments[{index}].choice")
        if experiment.group not in names:
            EXPERIMENT_NAME.check(experiment.group, f"$.experiments[{index}].group")
    _check_items(NEWSLETTER, body.newsletters or (), "$.newsletters")
    known = EVENT_TYPE.seen
    for index, event in enumerate(body.events):
        if event.type not in known:
            EVENT_TYPE.check(event.type, f"$.events[{index}].type")


def _check_items(checked: Checked, values: Sequence[str], path: str) -> None:
    seen = checked.seen
    for index, value in enumerate(values):
        if value not in seen:
            checked.check(value, f"{path}[{index}]")


# -- sidecar: server-side events from back-end services ------------------------------------

Hex32 = Annotated[str, Meta(pattern=r"(?a)^[0-9a-f]{32}\Z")]
TokenId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"(?a)^[0-9A-Za-z_-]+\Z")]
ServerEventName = Annotated[str, Meta(max_length=256, pattern=r"(?a)^[\w.:-]+\Z")]
FlowType = Annotated[str, Meta(max_length=64, pattern=r"(?a)^\w+\Z")]
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


class Device(Struct, kw_only=True):
    """One of the user's devices, for the sync device counts (other keys are ignored)."""

    lastAccessTime: Offset | None = None


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
    # The user's devices (FxA's `devices`): sync_device_count, sync_active_devices_*.
    devices: Annotated[list[Device], Meta(max_length=1000)] | None = None
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
