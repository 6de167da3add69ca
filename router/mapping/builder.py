"""Turning validated input into outgoing records: flow events, Amplitude events, VWO conversions.

Per request, everything that depends only on the request (user properties, the
service name, the parsed User-Agent) is computed once and shared by the batch's
records; per event only the rule lookup, the time and the record itself are made.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

import msgspec

from ..enrich.flow import FlowSigner
from ..enrich.geo import GeoDB, Location
from ..enrich.locale import LocaleMatcher
from ..enrich.useragent import UserAgentParser
from ..events import FlowQuery, MetricsBody, present
from ..fxa_fields import client_metrics
from ..records import AmplitudeEvent, FlowEvent, RecordBatch, VwoConversion
from ..ruletable import Mapping, RuleTable
from ..ruletable.ruleset import RuleSet
from ..stats import Stats
from .subject import LOG_LIMIT, RequestInfo, Subject, cut

FLOW_BEGIN = "flow.begin"
FLOW_COMPLETE = "flow.complete"
_UTM_OK = re.compile(r"^[\w.%-]+$").match
_APP_VERSION = re.compile(r"([0-9]+)\.([0-9]+)$")

_replace = msgspec.structs.replace

FORM_TYPES = {
    "email": ("screen.enter-email", "flow.enter-email.view"),
    "button": ("screen.rp-button", "flow.rp-button.view"),
    "subscribe": ("screen.subscribe", "flow.subscribe.view"),
}


# What an event's name alone decides: the name rules see (None: a flow.timing.* name
# without a number, dropped as bad_time), flow.timing.*'s number (the event's flow_time),
# and the flow event it writes (screen.x -> flow.x.view), if any. A plain tuple: built
# for every flow.timing.* event, where a NamedTuple's Python-level __new__ showed up.
EventPlan = tuple[str | None, int | None, str | None]
# With the mapping of the rule for that name: one lookup an event (`process_batch`).
_Step = tuple[str | None, int | None, str | None, Mapping | None]

# Names' steps kept (not flow.timing.*, whose numbers make every name new): bounded, and
# dropped at once when full, so a flood of distinct names costs memory only up to this.
MAX_STEPS = 4096


def event_plan(name: str) -> EventPlan:
    timing: int | None = None
    if name.startswith("flow.timing."):
        sep = name.rfind(".")
        try:
            timing = int(float(name[sep + 1 :]))
        except (ValueError, OverflowError):  # "x", "nan", "inf"
            return None, None, None
        name = name[:sep]
    if name.startswith("screen."):
        flow_event: str | None = f"flow.{name[7:]}.view"
    elif name.startswith("flow."):
        flow_event = name
    else:
        flow_event = None
    return name, timing, flow_event


# A flow start's records but for the ids, by what they are made of (`begin_flow`).
# Bounded: cleared when full, and only short headers are kept. A key's strings are
# bounded by their fields' lengths (a few KiB at worst): a flood of distinct queries or
# User-Agents costs a few MiB at most.
MAX_SHAPES = 1024
MAX_SHAPE_HEADERS = 1024
# Stand-ins for a flow start's ids while its shape is built: not hex, so never a real id.
_FLOW_MARK = "<flow id>"
_DEVICE_MARK = "<device id>"


class _FlowShape(NamedTuple):
    amplitude: tuple[AmplitudeEvent, ...]
    flow: tuple[FlowEvent, ...]
    vwo: tuple[VwoConversion, ...]
    user_props: dict[str, Any]  # with _FLOW_MARK for the flow id


class _Shared:
    """What every Amplitude record of one request shares, built once per request."""

    __slots__ = ("amplitude", "base_props", "props", "static_props", "user_props")

    def __init__(
        self,
        amplitude: AmplitudeEvent,
        static_props: dict[int, tuple[Mapping, dict[str, Any]]] | None = None,
    ) -> None:
        # A record to copy: only event_type, time and event_properties differ per event.
        # Its event_properties are the base ones, its user_properties the request's.
        self.amplitude = amplitude
        self.base_props = amplitude.event_properties
        self.user_props = amplitude.user_properties
        # Per request: a mapping's properties may copy any field of the body.
        self.props: dict[int, tuple[Mapping, dict[str, Any]]] = {}
        # A mapping's properties made of the base ones and its own alone: shared by every
        # request of a kept shape (same base properties), so the records of many
        # requests hold one dict, which the log sink encodes once a batch.
        self.static_props = {} if static_props is None else static_props


# A `POST /metrics` request's per-request parts but for its ids, by what they are made of
# (`_request_parts`). Bounded like the flow shapes; bodies with long experiment lists
# are not kept.
MAX_REQUEST_SHAPES = 1024
MAX_SHAPE_EXPERIMENTS = 256  # characters of experiment choices and groups in all


# The body fields a request shape's key is made of (`_request_parts`, which reads them
# one by one): a rule copying only these copies the same values for every request of
# the shape. Subject.field reads a body field by this wire name.
KEYED_FIELDS = frozenset(
    {
        "lang",
        "service",
        "context",
        "entrypoint",
        "entryPoint",
        "entrypoint_experiment",
        "entrypoint_variation",
        "utm_campaign",
        "utm_content",
        "utm_medium",
        "utm_source",
        "utm_term",
        "planId",
        "plan_id",
        "productId",
        "product_id",
        "syncEngines",
        "experiments",
        "newsletters",
        "userPreferences",
    }
)


# Mappings whose properties a kept shape shares (`_Shared.static_props`), at most.
MAX_SHARED_PROPS = 256


@lru_cache(maxsize=1024)
def keyed_fields(fields: tuple[tuple[str, str], ...]) -> bool:
    """Does a mapping copy only fields of a request shape's key?"""
    return all(field in KEYED_FIELDS for _, field in fields)


class _RequestShape(NamedTuple):
    # After _Shared: compiled (mypyc), a NamedTuple naming a class defined further down
    # crashed the module's import (SIGSEGV, tests/test_wheel_compiled.py).
    subject: Subject
    shared: _Shared
    flow_template: FlowEvent


class RecordBuilder:
    """Builds browsers' records; owns nothing but references to shared tables."""

    def __init__(
        self,
        ruleset: RuleSet,
        signer: FlowSigner,
        stats: Stats,
        clients: dict[str, str] | None = None,
        app_version: str | None = None,
        *,
        geo: GeoDB | None = None,
        locales: LocaleMatcher | None = None,
        user_agents: UserAgentParser | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.signer = signer
        self.stats = stats
        self.clients = clients or {}
        # All built here, at start-up: nothing is built lazily on the request path.
        self.geo = geo
        self.locales = locales or LocaleMatcher()
        self.user_agents = user_agents or UserAgentParser()
        # Amplitude's app_version is the product's "major.minor" (FxA: its train).
        version = _APP_VERSION.search(app_version or "")
        self.app_version = version.group(0) if version else None
        self._flow_shapes: dict[tuple[object, ...], _FlowShape] = {}
        self._request_shapes: dict[tuple[object, ...], _RequestShape] = {}
        self._steps: dict[str, _Step] = {}

    @property
    def rules(self) -> RuleTable:
        return self.ruleset.rules

    def use(self, ruleset: RuleSet) -> None:
        """Serve from `ruleset` from now on (a reload): rules and registry in one step."""
        self.ruleset = ruleset
        self._flow_shapes = {}  # built with the old rules
        self._request_shapes = {}  # their properties cache holds the old rules' mappings
        self._steps = {}

    # -- shared per-request parts ---------------------------------------------------------

    def _service_name(self, service: str | None) -> tuple[str | None, str | None]:
        if not service or service == "content-server":
            return None, None
        if service == "sync":
            return "sync", None
        return self.clients.get(service, "undefined_oauth"), service

    def _templates(self, subject: Subject, req: RequestInfo) -> _Shared:
        """The event fields, base event_properties and user_properties shared by a batch."""
        ua = self.user_agents.parse(req.user_agent)
        where = self._location(req)
        service_name, client_id = self._service_name(subject.service)
        # Plain ifs, in FxA's key order: this runs for every request.
        event_properties: dict[str, Any] = {}
        if service_name:
            event_properties["service"] = service_name
        if client_id:
            event_properties["oauth_client_id"] = client_id
        if subject.plan_id:
            event_properties["plan_id"] = subject.plan_id
        if subject.product_id:
            event_properties["product_id"] = subject.product_id
        user_properties: dict[str, Any] = {}
        if subject.entrypoint:
            user_properties["entrypoint"] = subject.entrypoint
        if subject.entrypoint_experiment:
            user_properties["entrypoint_experiment"] = subject.entrypoint_experiment
        if subject.entrypoint_variation:
            user_properties["entrypoint_variation"] = subject.entrypoint_variation
        if subject.flow_id:
            user_properties["flow_id"] = subject.flow_id
        if ua.browser:
            user_properties["ua_browser"] = ua.browser
        if ua.browser_version:
            user_properties["ua_version"] = ua.browser_version
        if subject.utm_campaign:
            user_properties["utm_campaign"] = subject.utm_campaign
        if subject.utm_content:
            user_properties["utm_content"] = subject.utm_content
        if subject.utm_medium:
            user_properties["utm_medium"] = subject.utm_medium
        if subject.utm_source:
            user_properties["utm_source"] = subject.utm_source
        if subject.utm_term:
            user_properties["utm_term"] = subject.utm_term
        if subject.sync_engines:
            user_properties["sync_engines"] = subject.sync_engines
        if subject.newsletters:
            user_properties["newsletters"] = subject.newsletters
            user_properties["newsletter_state"] = "subscribed"
        if subject.devices:
            user_properties.update(subject.devices)
        append: dict[str, Any] = {}
        if service_name:
            append["fxa_services_used"] = service_name
        if subject.experiments:
            append["experiments"] = subject.experiments
        if subject.preferences:
            append.update(subject.preferences)
        if append:
            user_properties["$append"] = append
        fields: dict[str, Any] = {
            "user_id": subject.uid,
            "device_id": subject.device_id,
            "session_id": subject.flow_begin_time,
            "app_version": self.app_version,
            "language": subject.lang,
            "country": where.country if where else None,
            "region": where.region if where else None,
            "os_name": ua.os,
            "os_version": ua.os_version,
            "device_model": ua.device_model,
        }
        return _Shared(
            AmplitudeEvent(
                event_type="",
                time=0,
                **fields,
                event_properties=event_properties,
                user_properties=user_properties,
            )
        )

    def _location(self, req: RequestInfo) -> Location | None:
        return self.geo.locate(req.ip) if self.geo is not None else None

    def _locale(self, subject: Subject, req: RequestInfo) -> str | None:
        if req.locale:
            return req.locale
        if req.accept_language is not None:
            return self.locales.locale(req.accept_language)
        return subject.lang

    def _flow_fields(self, subject: Subject, req: RequestInfo) -> dict[str, Any]:
        where = self._location(req)
        fields = {
            "flow_id": subject.flow_id,
            "context": cut(subject.context),
            "entrypoint": cut(subject.entrypoint),
            "service": cut(subject.service),
            "locale": cut(self._locale(subject, req)),
            "userAgent": cut(req.user_agent),
        }
        if where is not None:
            fields["country"] = where.country
            fields["countryCode"] = where.country_code
            fields["region"] = where.region
        if not req.dnt:
            for key in ("utm_campaign", "utm_content", "utm_medium", "utm_source"):
                value = getattr(subject, key)
                if value and _UTM_OK(value):
                    fields[key] = value[:LOG_LIMIT]
        return fields

    # -- one event ------------------------------------------------------------------------

    def _emit(
        self,
        out: RecordBatch,
        mapping: Mapping,
        time: int,
        subject: Subject,
        req: RequestInfo,
        shared: _Shared,
    ) -> dict[str, Any] | None:
        """Append one event's records; its event_properties if that is all it makes."""
        base_props = shared.base_props
        props = base_props
        if mapping.properties or mapping.fields:
            # The same mapping gives the same properties for the whole request (for every
            # request of a kept shape when it copies no body field): build them once.
            # Keeping the mapping in the entry keeps its id from being reused.
            static = not mapping.fields or keyed_fields(mapping.fields)
            known = shared.static_props if static else shared.props
            cached = known.get(id(mapping))
            if cached is not None and cached[0] is mapping:
                props = cached[1]
            else:
                props = {**base_props, **mapping.properties}
                for prop, field in mapping.fields:
                    value = subject.field(field)
                    if value is not None:
                        props[prop] = value
                if static and len(known) >= MAX_SHARED_PROPS:
                    # Fuzzy rules make a mapping per event name they match: a flood of
                    # distinct names must not grow a kept shape's cache.
                    known.clear()
                known[id(mapping)] = (mapping, props)
        append = out.amplitude.append
        template = shared.amplitude
        if mapping.minimal:
            minimal = {"service": base_props["service"]} if "service" in base_props else {}
            append(
                AmplitudeEvent(
                    event_type=mapping.event_type,
                    time=time,
                    user_id=template.user_id,
                    app_version=template.app_version,
                    event_properties=minimal,
                )
            )
        else:
            # Copying the request's template is several times faster than building each
            # record from keyword arguments; the values (and shared dicts) are the same.
            append(
                _replace(template, event_type=mapping.event_type, time=time, event_properties=props)
            )
            for extra in mapping.also:
                append(
                    _replace(
                        template,
                        event_type=extra.event_type,
                        time=time + extra.delay_ms,
                        event_properties=props,
                    )
                )
        if mapping.vwo and subject.uid:
            out.vwo.append(
                VwoConversion(
                    name=mapping.vwo,
                    user_id=subject.uid,
                    time=time,
                    properties={
                        f: v for f in mapping.vwo_fields if (v := subject.field(f)) is not None
                    },
                    user_agent=req.user_agent or None,
                    ip=req.ip,
                )
            )
            return None
        return None if mapping.minimal or mapping.also else props

    def _emit_named(
        self,
        out: RecordBatch,
        name: str,
        time: int,
        subject: Subject,
        req: RequestInfo,
        shared: _Shared,
    ) -> bool:
        """Append the records of the event `name`; False if no rule maps it."""
        mapping = self.rules.match(name)
        if mapping is None:
            return False
        self._emit(out, mapping, time, subject, req, shared)
        return True

    def _step(self, name: str) -> _Step:
        """What an event's name decides, its rule's mapping included; kept per builder
        (bounded, flow.timing.* names not kept) and dropped on a rules reload (`use`)."""
        rule_name, timing, flow_event = event_plan(name)
        mapping = None if rule_name is None else self.rules.match(rule_name)
        step = (rule_name, timing, flow_event, mapping)
        if timing is None and rule_name is not None:  # flow.timing.* names: not kept
            if len(self._steps) >= MAX_STEPS:
                self._steps.clear()
            self._steps[name] = step
        return step

    # -- whole requests -------------------------------------------------------------------

    def process_batch(self, body: MetricsBody, req: RequestInfo) -> RecordBatch:
        """The records of one `POST /metrics` batch.

        When its flow is refused, nothing but a sampled user's `client.metrics` record.
        """
        out = RecordBatch()
        stats = self.stats
        if body.isSampledUser:
            # post-metrics.js writes sampled users' batches before it looks at the flow.
            out.client_metrics.append(client_metrics(body, req.received, req.user_agent))
        problem = self.signer.check(body.flowId, body.flowBeginTime, req.received)
        if problem is not None:
            stats.incr("metrics.batch.dropped", 1, {"reason": problem.value})
            stats.incr("metrics.events.dropped", len(body.events), {"reason": problem.value})
            return out
        subject, shared, flow_template = self._request_parts(body, req)
        begin = body.flowBeginTime or 0
        received = req.received
        skew = received - body.flushTime
        start = body.startTime + skew
        oldest = received - self.signer.expiry_ms
        flows = out.flow
        initial_view = present(body.initialView)
        amplitude = out.amplitude.append
        template = shared.amplitude
        # By rule name, this request's plain records' event type and properties (no
        # `also`, VWO or minimal output): those are made right here, the rest by _emit.
        plain: dict[str, tuple[str, dict[str, Any]]] = {}
        steps = self._steps
        unmapped = stale = 0
        for event in body.events:
            name = event.type
            if name == FLOW_BEGIN:
                time = begin
                rule_name = FLOW_BEGIN
                flow_time = 0
                flow_event: str | None = FLOW_BEGIN
                mapping = self.rules.match(FLOW_BEGIN)
            else:
                time = start + event.offset
                if not oldest < time <= received:
                    stale += 1
                    continue
                if name == "loaded":
                    name = f"flow.performance.{initial_view}"
                step = steps.get(name) or self._step(name)
                known, timing, flow_event, mapping = step
                if known is None:
                    stale += 1  # flow.timing.* without a number
                    continue
                rule_name = known
                flow_time = time - begin if timing is None else timing
            if mapping is None:
                unmapped += 1
            else:
                entry = plain.get(rule_name)
                if entry is not None:
                    amplitude(
                        _replace(
                            template, event_type=entry[0], time=time, event_properties=entry[1]
                        )
                    )
                else:
                    props = self._emit(out, mapping, time, subject, req, shared)
                    if props is not None:
                        plain[rule_name] = (mapping.event_type, props)
            if flow_event is not None:
                flows.append(
                    _replace(flow_template, event=flow_event, flow_time=flow_time, time=time)
                )
        stats.incr("metrics.events.accepted", len(body.events))
        if len(body.events) > unmapped + stale:
            stats.incr("metrics.events.mapped", len(body.events) - unmapped - stale)
        if unmapped:
            stats.incr("metrics.events.unmapped", unmapped)
        if stale:
            stats.incr("metrics.events.dropped", stale, {"reason": "bad_time"})
        return out

    def _request_key(self, req: RequestInfo) -> tuple[object, ...] | None:
        """What a request's headers and address add to a shape's key (the User-Agent, the
        language headers, DNT, the location); None when the headers are too long to keep."""
        if len(req.user_agent) + len(req.accept_language or "") > MAX_SHAPE_HEADERS:
            return None
        return (req.user_agent, req.accept_language, req.locale, req.dnt, self._location(req))

    def _request_parts(self, body: MetricsBody, req: RequestInfo) -> _RequestShape:
        """A batch's subject, shared Amplitude parts and flow-event template.

        Of a body's fields only its flow id, begin time, device id and uid differ between
        the batches of one kind of page and browser; the rest (service, entrypoint, utm,
        language, experiments ... and the User-Agent, language headers, DNT and location)
        make a key. The parts are built once per key (bounded) and copied with the ids
        filled in. Only for a body whose flow verified: the flow id is set.
        """
        request = self._request_key(req)
        experiments = body.experiments
        if request is None or (
            experiments
            and sum(len(e.choice) + len(e.group) for e in experiments) > MAX_SHAPE_EXPERIMENTS
        ):
            key = None
        else:
            newsletters = body.newsletters
            key = (
                body.lang,
                body.service,
                body.context,
                body.entrypoint,
                body.entryPoint,
                body.entrypoint_experiment,
                body.entrypoint_variation,
                body.utm_campaign,
                body.utm_content,
                body.utm_medium,
                body.utm_source,
                body.utm_term,
                body.planId,
                body.plan_id,
                body.productId,
                body.product_id,
                tuple(body.syncEngines),
                tuple(experiments),
                tuple(newsletters) if newsletters is not None else None,
                body.userPreferences,
            ) + request
            shape = self._request_shapes.get(key)
            if shape is not None:
                return self._fill(shape, body)
        subject = Subject.from_body(body)
        shared = self._templates(subject, req)
        flow_template = FlowEvent(event="", flow_time=0, time=0, **self._flow_fields(subject, req))
        if key is not None:
            if len(self._request_shapes) >= MAX_REQUEST_SHAPES:
                self._request_shapes.clear()
            # Kept with this body's ids, which every copy overwrites, but not the body
            # (its events) nor this request's property cache.
            self._request_shapes[key] = _RequestShape(
                _replace(subject, source=None),
                _Shared(shared.amplitude, shared.static_props),
                flow_template,
            )
        return _RequestShape(subject, shared, flow_template)

    @staticmethod
    def _fill(shape: _RequestShape, body: MetricsBody) -> _RequestShape:
        """A kept shape with this body's ids (and the body itself, for copied fields)."""
        assert body.flowId is not None
        flow_id = body.flowId.lower()
        begin = body.flowBeginTime
        uid = present(body.uid)
        device_id = present(body.deviceId)
        subject = _replace(
            shape.subject,
            source=body,
            flow_id=flow_id,
            flow_begin_time=begin,
            uid=uid,
            device_id=device_id,
        )
        kept = shape.shared
        user_props = kept.user_props.copy()  # "flow_id" keeps its place (FxA's key order)
        user_props["flow_id"] = flow_id
        template = _replace(
            kept.amplitude,
            user_id=uid,
            device_id=device_id,
            session_id=begin,
            user_properties=user_props,
        )
        shared = _Shared(template, kept.static_props)
        return _RequestShape(subject, shared, _replace(shape.flow_template, flow_id=flow_id))

    def begin_flow(
        self, query: FlowQuery, flow_id: str, begin: int, device_id: str, req: RequestInfo
    ) -> RecordBatch:
        """`flow.begin` and the form_type events of `GET /metrics-flow`.

        The records of one page's flow starts differ only in their flow id, device id, begin
        time (and the VWO records' address): everything else comes from the query, the
        User-Agent, the language headers, DNT and the location. So the records are built
        once per such combination (`_flow_shape`, bounded) and copied with the ids filled in.
        """
        request = self._request_key(req)
        key = (query, request)
        shape = self._flow_shapes.get(key) if request is not None else None
        if shape is None:
            shape = self._flow_shape(query, req)
            if request is not None:
                if len(self._flow_shapes) >= MAX_SHAPES:
                    self._flow_shapes.clear()
                self._flow_shapes[key] = shape
        out = RecordBatch()
        user_props = shape.user_props.copy()  # "flow_id" keeps its place (FxA's key order)
        user_props["flow_id"] = flow_id
        amplitude = out.amplitude.append
        for record in shape.amplitude:
            if record.device_id is _DEVICE_MARK:
                amplitude(
                    _replace(
                        record,
                        time=record.time + begin,
                        device_id=device_id,
                        session_id=begin,
                        user_properties=user_props,
                    )
                )
            else:  # a minimal record: neither ids nor user properties
                amplitude(_replace(record, time=record.time + begin))
        flow = out.flow.append
        for event in shape.flow:
            flow(_replace(event, flow_id=flow_id, time=begin))
        vwo = out.vwo.append
        for conversion in shape.vwo:
            vwo(_replace(conversion, time=conversion.time + begin, ip=req.ip))
        return out

    def _flow_shape(self, query: FlowQuery, req: RequestInfo) -> _FlowShape:
        """A flow start's records with marks for its ids and times counted from 0."""
        out = RecordBatch()
        subject = Subject.from_query(query, _FLOW_MARK, 0, _DEVICE_MARK)
        shared = self._templates(subject, req)
        flow_fields = self._flow_fields(subject, req)
        self._emit_named(out, FLOW_BEGIN, 0, subject, req, shared)
        out.flow.append(FlowEvent(event=FLOW_BEGIN, flow_time=0, time=0, **flow_fields))
        if query.form_type in FORM_TYPES:
            screen, flow_event = FORM_TYPES[query.form_type]
            self._emit_named(out, screen, 0, subject, req, shared)
            out.flow.append(FlowEvent(event=flow_event, flow_time=0, time=0, **flow_fields))
        user_props = shared.user_props
        assert user_props.get("flow_id") is _FLOW_MARK
        for record in out.amplitude:
            full = record.device_id is _DEVICE_MARK
            # Every record either carries the request's ids and user properties or none.
            assert full == (record.user_properties is user_props), record
        return _FlowShape(tuple(out.amplitude), tuple(out.flow), tuple(out.vwo), user_props)

    def engage(
        self, query: FlowQuery, flow_id: str, begin: int, device_id: str, req: RequestInfo
    ) -> RecordBatch:
        """A relying party's engage ping: `fxa_rp - engage` for the uid, no flow.begin."""
        out = RecordBatch()
        subject = Subject.from_query(query, flow_id, begin, device_id)
        shared = self._templates(subject, req)
        self._emit_named(out, "flow.rp.engage", begin, subject, req, shared)
        return out
