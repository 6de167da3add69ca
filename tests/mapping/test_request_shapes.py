"""`RecordBuilder.process_batch` keeps each kind of page's per-request parts (subject,
Amplitude template, flow-event template) and copies them with a batch's ids: a batch's
records must be exactly what building them afresh gives, whatever the body and headers
(FxA's amplitude.ts and flow-event.js fields, as the handler tests check)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from router.enrich.flow import FlowSigner, now_ms
from router.enrich.geo import GeoDB
from router.events import MetricsBody
from router.mapping import Pipeline
from router.mapping.builder import (
    KEYED_FIELDS,
    MAX_REQUEST_SHAPES,
    MAX_SHARED_PROPS,
    MAX_STEPS,
)
from router.mapping.subject import RequestInfo
from router.records import RecordBatch
from router.ruletable import RuleTable
from router.ruletable.ruleset import RuleSet
from router.stats import Stats

from ..conftest import FLOW_KEY
from ..ruletable.rules import table_from
from ..support.bodies import body

UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0"
EVENTS = [
    ("flow.begin", 0),
    ("screen.enter-email", 10),
    ("flow.enter-email.engage", 20),
    ("flow.enter-email.submit", 30),
    ("screen.signup", 40),
    ("flow.signup.submit", 50),
    ("loaded", 60),
    ("flow.timing.x.123", 70),
]

# Rule kinds that read the request: copied body fields, VWO conversions (uid only),
# minimal and `also` records.
KINDS = table_from(
    {
        "exact": {
            "screen.enter-email": {
                "group": "email",
                "event": "view",
                "properties": {"kind": "static"},
                "fields": {"planned": "planId", "domain": "emailDomain"},
                "also": [{"group": "login", "event": "view", "delay_ms": 3}],
                "vwo": "email_viewed",
                "vwo_fields": ["utm_source", "emailDomain"],
            },
            "flow.enter-email.engage": {"group": "email", "event": "engage", "minimal": True},
            "flow.enter-email.submit": {"group": "email", "event": "submit"},
        }
    }
)

BODIES: list[dict[str, Any]] = [
    {},
    {"uid": "a" * 32, "emailDomain": "example.com", "planId": "plan_1"},
    {"entrypoint": "none", "entryPoint": "menu", "service": "0123456789abcdef"},
    {
        "experiments": [{"choice": "emailFirst", "group": "treatment"}],
        "syncEngines": ["bookmarks", "tabs"],
        "newsletters": ["mozilla-and-you"],
        "userPreferences": {"account-recovery": True, "emails": False},
        "utm_medium": "email",
        "utm_content": "c",
        "productId": "prod_1",
        "initialView": "signup",
    },
    {"lang": "de", "context": "fx_desktop_v3", "utm_term": "t", "deviceId": "none"},
]
REQUESTS = [
    RequestInfo(received=0, user_agent=UA, ip="81.2.69.160", accept_language="de, en;q=0.5"),
    RequestInfo(received=0, user_agent="curl/8", dnt=True, accept_language=""),
    RequestInfo(received=0, ip="8.8.8.8", locale="fr"),
]


def pipeline(table: RuleTable) -> Pipeline:
    return Pipeline(RuleSet(table), FlowSigner(FLOW_KEY), Stats(), app_version="1.2.3", geo=GeoDB())


def decoded(overrides: dict[str, Any]) -> MetricsBody:
    return msgspec.json.decode(msgspec.json.encode(body(EVENTS, **overrides)), type=MetricsBody)


def afresh(table: RuleTable, batch: MetricsBody, req: RequestInfo) -> RecordBatch:
    """The same batch through a builder that has kept nothing yet."""
    return pipeline(table).process_batch(batch, req)


def as_json(batch: RecordBatch) -> bytes:
    return msgspec.json.encode(batch)  # key order included


@pytest.mark.parametrize("overrides", BODIES)
@pytest.mark.parametrize("req", REQUESTS)
@pytest.mark.parametrize("which", ["bundled", "kinds"])
def test_copies_equal_records_built_afresh(
    overrides: dict[str, Any], req: RequestInfo, which: str, rules: RuleTable
) -> None:
    table = rules if which == "bundled" else KINDS
    builder = pipeline(table)
    # Two flows of one kind of page, by other users (a uid or none) on other devices.
    first = decoded(overrides)
    second = decoded({**overrides, "uid": "c" * 32, "deviceId": "d" * 32})
    assert first.flowId != second.flowId
    req = msgspec.structs.replace(req, received=now_ms())
    outputs = []
    for batch in (first, second, first):
        got = builder.process_batch(batch, req)
        assert as_json(got) == as_json(afresh(table, batch, req))
        assert got.amplitude and got.flow
        outputs.append((batch, got))
    assert len(builder._request_shapes) == 1
    # Records already made are not changed by later batches (nothing is shared mutably).
    for batch, got in outputs:
        assert as_json(got) == as_json(afresh(table, batch, req))


def test_the_kinds_table_reads_the_request() -> None:
    # The table above must exercise what it claims, or the comparison proves little.
    builder = pipeline(KINDS)
    req = RequestInfo(received=now_ms(), user_agent=UA, ip="81.2.69.160")
    builder.process_batch(decoded({}), req)  # kept: no uid, no emailDomain
    batch = decoded(BODIES[1])
    out = builder.process_batch(batch, req)
    assert len(builder._request_shapes) == 2  # planId is part of the key
    view = out.amplitude[0]
    assert view.event_properties["domain"] == "example.com"
    assert (view.user_id, view.device_id) == ("a" * 32, batch.deviceId)
    assert view.user_properties["flow_id"] == batch.flowId
    assert [v.properties for v in out.vwo] == [{"utm_source": "blog", "emailDomain": "example.com"}]
    # The same page again with another uid and email domain: kept parts, its own values.
    other = decoded({**BODIES[1], "uid": "b" * 32, "emailDomain": "example.org"})
    again = builder.process_batch(other, req)
    assert len(builder._request_shapes) == 2
    assert again.amplitude[0].event_properties["domain"] == "example.org"
    assert again.amplitude[0].user_id == "b" * 32
    assert [v.user_id for v in again.vwo] == ["b" * 32]
    minimal = [e for e in again.amplitude if e.event_type == "fxa_email - engage"]
    assert [(e.user_id, e.device_id) for e in minimal] == [("b" * 32, None)]


def test_every_key_part_makes_its_own_shape(rules: RuleTable) -> None:
    builder = pipeline(rules)
    base = RequestInfo(received=now_ms(), user_agent=UA, ip="81.2.69.160", accept_language="en")
    variants: list[tuple[dict[str, Any], RequestInfo]] = [
        ({}, base),
        ({}, msgspec.structs.replace(base, user_agent="curl/8")),
        ({}, msgspec.structs.replace(base, accept_language="de")),
        ({}, msgspec.structs.replace(base, dnt=True)),
        ({}, msgspec.structs.replace(base, locale="fr")),
        ({}, msgspec.structs.replace(base, ip="8.8.8.8")),  # another country
        ({"lang": "fr"}, base),
        ({"service": "0123456789abcdef"}, base),
        ({"context": "x"}, base),
        ({"entryPoint": "menu"}, base),
        ({"entrypoint_experiment": "e"}, base),
        ({"entrypoint_variation": "v"}, base),
        ({"utm_content": "c"}, base),
        ({"utm_medium": "m"}, base),
        ({"utm_source": "s"}, base),
        ({"utm_campaign": "x"}, base),
        ({"utm_term": "t"}, base),
        ({"plan_id": "p"}, base),
        ({"productId": "prod_2"}, base),
        ({"product_id": "prod_3"}, base),
        ({"syncEngines": ["tabs"]}, base),
        ({"experiments": [{"choice": "a", "group": "b"}]}, base),
        ({"newsletters": ["n"]}, base),
        ({"userPreferences": {"emails": True}}, base),
    ]
    for overrides, req in variants:
        for _ in range(2):
            batch = decoded(overrides)
            got = builder.process_batch(batch, req)
            assert as_json(got) == as_json(afresh(rules, batch, req)), overrides
    assert len(builder._request_shapes) == len(variants)


def test_shapes_are_bounded_and_big_keys_not_kept(rules: RuleTable) -> None:
    builder = pipeline(rules)
    batch = decoded({})
    for n in range(MAX_REQUEST_SHAPES + 10):  # a flood of distinct User-Agents
        builder.process_batch(batch, RequestInfo(received=now_ms(), user_agent=f"ua{n}"))
        assert len(builder._request_shapes) <= MAX_REQUEST_SHAPES
    builder._request_shapes.clear()
    many = decoded({"experiments": [{"choice": "c" * 100, "group": f"g{n}"} for n in range(3)]})
    long_ua = RequestInfo(received=now_ms(), user_agent="x" * 4000)
    for one, req in ((many, RequestInfo(received=now_ms())), (batch, long_ua)):
        got = builder.process_batch(one, req)
        assert as_json(got) == as_json(afresh(rules, one, req))
    assert not builder._request_shapes


def test_a_refused_flow_keeps_nothing(rules: RuleTable) -> None:
    builder = pipeline(rules)
    forged = decoded({"flowId": "0" * 64})
    out = builder.process_batch(forged, RequestInfo(received=now_ms(), user_agent=UA))
    assert not out.amplitude and not builder._request_shapes


def test_a_kept_shape_holds_no_body(rules: RuleTable) -> None:
    # A 1000-event body must not stay in memory because its page's parts are kept.
    builder = pipeline(rules)
    builder.process_batch(decoded({}), RequestInfo(received=now_ms(), user_agent=UA))
    (shape,) = builder._request_shapes.values()
    assert shape.subject.source is None
    assert not shape.shared.props


def test_a_rules_reload_forgets_the_event_steps(rules: RuleTable) -> None:
    # process_batch keeps each event name's plan and mapping (`_steps`): after a reload
    # the same names must map by the new rules.
    builder = pipeline(rules)
    batch = decoded({})
    req = RequestInfo(received=now_ms(), user_agent=UA)
    before = builder.process_batch(batch, req)
    assert "fxa_email_first - view" in [e.event_type for e in before.amplitude]
    assert builder._steps
    builder.use(RuleSet(KINDS))
    after = builder.process_batch(batch, req)
    assert as_json(after) == as_json(afresh(KINDS, batch, req))
    assert [e.event_type for e in after.amplitude][:2] == ["fxa_email - view", "fxa_login - view"]


def test_event_steps_are_bounded_and_timing_names_not_kept(rules: RuleTable) -> None:
    builder = pipeline(rules)
    req = RequestInfo(received=now_ms(), user_agent=UA)
    # A flood of distinct names (mapped or not) and of flow.timing.* numbers.
    names = [(f"flow.x{n}.engage", n) for n in range(MAX_STEPS + 10)]
    timings = [(f"flow.timing.x.{n}", n) for n in range(200)]
    for chunk in range(0, len(names), 200):
        events = names[chunk : chunk + 200]
        one = msgspec.json.decode(msgspec.json.encode(body(events)), type=MetricsBody)
        got = builder.process_batch(one, req)
        assert len(got.flow) == len(events)
        assert len(builder._steps) <= MAX_STEPS
    builder._steps.clear()
    one = msgspec.json.decode(msgspec.json.encode(body(timings)), type=MetricsBody)
    got = builder.process_batch(one, req)
    assert [e.flow_time for e in got.flow] == [n for _, n in timings]
    assert not builder._steps


# A value for each body field a shape's key is made of, other than body()'s.
KEYED_VALUES: dict[str, Any] = {
    "lang": "fr",
    "service": "0123456789abcdef",
    "context": "x",
    "entrypoint": "menu",
    "entryPoint": "menu",
    "entrypoint_experiment": "e",
    "entrypoint_variation": "v",
    "utm_campaign": "x",
    "utm_content": "c",
    "utm_medium": "m",
    "utm_source": "s",
    "utm_term": "t",
    "planId": "p",
    "plan_id": "p",
    "productId": "prod_2",
    "product_id": "prod_3",
    "syncEngines": ["tabs"],
    "experiments": [{"choice": "a", "group": "b"}],
    "newsletters": ["n"],
    "userPreferences": {"emails": True},
}


def test_every_keyed_field_is_part_of_the_key(rules: RuleTable) -> None:
    # Properties copied from these fields are shared by a shape's requests: a field
    # named here but left out of the key would give one page's values to another.
    assert set(KEYED_VALUES) == KEYED_FIELDS
    builder = pipeline(rules)
    req = RequestInfo(received=now_ms(), user_agent=UA)
    builder.process_batch(decoded({}), req)
    for count, (name, value) in enumerate(KEYED_VALUES.items(), start=2):
        builder.process_batch(decoded({name: value}), req)
        assert len(builder._request_shapes) == count, name


def test_a_shapes_requests_share_properties_copied_from_its_key_only() -> None:
    req = RequestInfo(received=now_ms(), user_agent=UA)
    table = table_from(
        {
            "exact": {
                "screen.enter-email": {
                    "group": "email",
                    "event": "view",
                    "fields": {"planned": "planId"},
                },
                "flow.enter-email.submit": {
                    "group": "email",
                    "event": "submit",
                    "fields": {"domain": "emailDomain"},
                },
            }
        }
    )
    builder = pipeline(table)
    first = builder.process_batch(decoded({"planId": "p1", "emailDomain": "a.example"}), req)
    second = builder.process_batch(decoded({"planId": "p1", "emailDomain": "b.example"}), req)
    assert len(builder._request_shapes) == 1
    (view_1, submit_1), (view_2, submit_2) = first.amplitude, second.amplitude
    assert view_1.event_properties is view_2.event_properties  # one dict to encode
    assert view_1.event_properties["planned"] == "p1"
    assert submit_1.event_properties is not submit_2.event_properties
    assert submit_2.event_properties["domain"] == "b.example"


def test_a_rules_reload_forgets_the_request_shapes(rules: RuleTable) -> None:
    # Their kept properties were made by the old rules' mappings.
    builder = pipeline(rules)
    builder.process_batch(decoded({}), RequestInfo(received=now_ms(), user_agent=UA))
    assert builder._request_shapes
    builder.use(RuleSet(KINDS))
    assert not builder._request_shapes


def test_a_shapes_shared_properties_stay_bounded(rules: RuleTable) -> None:
    # A fuzzy rule makes a mapping per event name it matches: a flood of distinct names
    # on one page must not grow the page's shared properties without bound.
    builder = pipeline(rules)
    req = RequestInfo(received=now_ms(), user_agent=UA)
    for start in range(0, 3 * MAX_SHARED_PROPS, 100):
        names = [(f"flow.install_from.x{start + n}", n) for n in range(100)]
        batch = msgspec.json.decode(msgspec.json.encode(body(names)), type=MetricsBody)
        got = builder.process_batch(batch, req)
        assert as_json(got) == as_json(afresh(rules, batch, req))
        assert got.amplitude[0].event_type == "fxa_connect_device - view"
        (shape,) = builder._request_shapes.values()
        assert 0 < len(shape.shared.static_props) <= MAX_SHARED_PROPS
