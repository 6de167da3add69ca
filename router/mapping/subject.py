"""The request-wide data every record of a batch draws on: what the HTTP layer knows of a
request (`RequestInfo`) and what its body, query or server event says (`Subject`)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import msgspec

from ..events import FlowQuery, MetricsBody, MetricsContext, ServerEvent, present
from ..fxa_fields import sync_devices, user_preferences
from ..ruletable.registry import EventSpec

LOG_LIMIT = 100
_SNAKE_UPPER = re.compile(r"([a-z])([A-Z])")
_SNAKE_SEP = re.compile(r"[.-]")


class RequestInfo(msgspec.Struct, frozen=True):
    """What the HTTP layer knows about a request, beyond its body."""

    received: int
    user_agent: str = ""
    ip: str | None = None
    dnt: bool = False
    # Already matched (wins over accept_language); None: match accept_language.
    locale: str | None = None
    # The raw Accept-Language header of an HTTP request ("" when absent); None: not HTTP.
    accept_language: str | None = None


# Experiment and newsletter names come from a small set: a bounded cache saves two
# template substitutions per name per request (3% of a 1-event request's CPU).
@lru_cache(maxsize=4096)
def to_snake_case(text: str) -> str:
    """FxA's toSnakeCase: camelCase and dots/dashes to snake_case."""
    return _SNAKE_SEP.sub("_", _SNAKE_UPPER.sub(r"\1_\2", text)).lower()


def cut(value: Any) -> str | None:
    value = present(value)
    return value[:LOG_LIMIT] if isinstance(value, str) else None


class Subject(msgspec.Struct, kw_only=True, gc=False):
    """The request-wide data every record of a batch draws on."""

    source: Any
    flow_id: str | None = None
    flow_begin_time: int | None = None
    uid: str | None = None
    device_id: str | None = None
    lang: str | None = None
    service: str | None = None
    context: str | None = None
    entrypoint: str | None = None
    entrypoint_experiment: str | None = None
    entrypoint_variation: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_medium: str | None = None
    utm_source: str | None = None
    utm_term: str | None = None
    plan_id: str | None = None
    product_id: str | None = None
    sync_engines: list[str] = msgspec.field(default_factory=list)
    experiments: list[str] = msgspec.field(default_factory=list)
    newsletters: list[str] = msgspec.field(default_factory=list)
    # userPreferences, snake-cased, for `$append`.
    preferences: dict[str, bool] = msgspec.field(default_factory=dict)
    # sync_device_count, sync_active_devices_day|week|month (server events).
    devices: dict[str, int] = msgspec.field(default_factory=dict)

    @classmethod
    def from_body(cls, body: MetricsBody) -> Subject:
        return cls(
            source=body,
            flow_id=body.flowId.lower() if body.flowId else None,
            flow_begin_time=body.flowBeginTime,
            uid=present(body.uid),
            device_id=present(body.deviceId),
            lang=present(body.lang),
            service=present(body.service),
            context=present(body.context),
            entrypoint=present(body.entrypoint) or present(body.entryPoint),
            entrypoint_experiment=present(body.entrypoint_experiment),
            entrypoint_variation=present(body.entrypoint_variation),
            utm_campaign=present(body.utm_campaign),
            utm_content=present(body.utm_content),
            utm_medium=present(body.utm_medium),
            utm_source=present(body.utm_source),
            utm_term=present(body.utm_term),
            plan_id=present(body.planId) or present(body.plan_id),
            product_id=present(body.productId) or present(body.product_id),
            sync_engines=list(body.syncEngines),
            experiments=[
                f"{to_snake_case(e.choice)}_{to_snake_case(e.group)}" for e in body.experiments
            ],
            newsletters=[to_snake_case(n) for n in body.newsletters or ()],
            preferences=user_preferences(body.userPreferences),
        )

    @classmethod
    def from_query(cls, query: FlowQuery, flow_id: str, begin: int, device_id: str) -> Subject:
        return cls(
            source=query,
            flow_id=flow_id,
            flow_begin_time=begin,
            uid=query.uid,
            device_id=device_id,
            service=present(query.service),
            context=present(query.context),
            entrypoint=present(query.entrypoint),
            entrypoint_experiment=present(query.entrypoint_experiment),
            entrypoint_variation=present(query.entrypoint_variation),
            utm_campaign=present(query.utm_campaign),
            utm_content=present(query.utm_content),
            utm_medium=present(query.utm_medium),
            utm_source=present(query.utm_source),
            utm_term=present(query.utm_term),
            product_id=present(query.product_id),
        )

    @classmethod
    def from_server_event(
        cls, event: ServerEvent, context: MetricsContext | None, received: int | None = None
    ) -> Subject:
        """A back-end event; `context` is its metrics context with invalid flow fields removed."""
        ctx = context or _NO_CONTEXT
        return cls(
            source=event.attributes,
            flow_id=ctx.flowId.lower() if ctx.flowId else None,
            flow_begin_time=ctx.flowBeginTime,
            uid=event.uid,
            device_id=event.device_id or ctx.deviceId,
            service=present(event.service),
            entrypoint=ctx.entrypoint,
            entrypoint_experiment=ctx.entrypointExperiment,
            entrypoint_variation=ctx.entrypointVariation,
            utm_campaign=ctx.utmCampaign,
            utm_content=ctx.utmContent,
            utm_medium=ctx.utmMedium,
            utm_source=ctx.utmSource,
            utm_term=ctx.utmTerm,
            plan_id=ctx.planId or _str_attr(event, "planId"),
            product_id=ctx.productId or _str_attr(event, "productId"),
            devices=sync_devices(event.devices, received) if received is not None else {},
        )

    def field(self, name: str) -> Any:
        """A request field by its wire name, for rules that copy fields into properties."""
        if isinstance(self.source, dict):
            return present(self.source.get(name))
        return present(getattr(self.source, name, None))


_NO_CONTEXT = MetricsContext()


def _str_attr(event: ServerEvent, name: str) -> str | None:
    value = event.attributes.get(name)
    return value if isinstance(value, str) and value else None


class ServerItem(msgspec.Struct, frozen=True):
    """A validated server event with its registry entry and its context (inline or stashed)."""

    event: ServerEvent
    spec: EventSpec
    context: MetricsContext | None = None
