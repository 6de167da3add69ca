"""`RecordBuilder.begin_flow` copies a cached shape of a flow start's records: the copies
must be exactly what building every record afresh gives (FxA's flow-event.js and
amplitude.ts fields, as the handler tests check), for any rule kind a flow start can hit."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from router.enrich.flow import FlowSigner
from router.enrich.geo import GeoDB
from router.events import FlowQuery
from router.mapping import Pipeline
from router.mapping.builder import FLOW_BEGIN, FORM_TYPES, MAX_SHAPES, RecordBuilder
from router.mapping.subject import RequestInfo, Subject
from router.records import FlowEvent, RecordBatch
from router.ruletable import RuleTable
from router.ruletable.ruleset import RuleSet
from router.stats import Stats

from ..ruletable.rules import table_from

UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0"


def fresh(
    builder: RecordBuilder,
    query: FlowQuery,
    flow_id: str,
    begin: int,
    device_id: str,
    req: RequestInfo,
) -> RecordBatch:
    """A flow start built record by record, as begin_flow did before it kept shapes."""
    out = RecordBatch()
    subject = Subject.from_query(query, flow_id, begin, device_id)
    shared = builder._templates(subject, req)
    flow_fields = builder._flow_fields(subject, req)
    builder._emit_named(out, FLOW_BEGIN, begin, subject, req, shared)
    out.flow.append(FlowEvent(event=FLOW_BEGIN, flow_time=0, time=begin, **flow_fields))
    if query.form_type in FORM_TYPES:
        screen, flow_event = FORM_TYPES[query.form_type]
        builder._emit_named(out, screen, begin, subject, req, shared)
        out.flow.append(FlowEvent(event=flow_event, flow_time=0, time=begin, **flow_fields))
    return out


def as_json(batch: RecordBatch) -> bytes:
    return msgspec.json.encode(batch)  # key order included


def builder_for(table: RuleTable) -> Pipeline:
    return Pipeline(RuleSet(table), FlowSigner("k"), Stats(), app_version="1.2.3")


# Every kind of output a rule gives: plain, with properties and copied fields, an `also`
# record, minimal, and a VWO conversion (made only when the query has a uid).
KINDS = table_from(
    {
        "exact": {
            "flow.begin": {"group": "login", "event": "begin", "minimal": True},
            "screen.enter-email": {
                "group": "email",
                "event": "view",
                "properties": {"kind": "static"},
                "fields": {"entry": "entrypoint", "campaign": "utm_campaign"},
                "also": [{"group": "login", "event": "view", "delay_ms": 3}],
                "vwo": "email_viewed",
                "vwo_fields": ["utm_source"],
            },
        }
    }
)

QUERIES = [
    {},
    {"form_type": "email", "entrypoint": "menu", "service": "sync", "context": "fx_desktop_v3"},
    {"form_type": "email", "utm_campaign": "c1", "utm_source": "s", "uid": "a" * 32},
    {"form_type": "button", "service": "0123456789abcdef", "product_id": "prod_1"},
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize(
    "req",
    [
        RequestInfo(received=5, user_agent=UA, ip="127.0.0.1", accept_language="de, en;q=0.5"),
        RequestInfo(received=5, user_agent="curl/8", dnt=True, accept_language=""),
        RequestInfo(received=5, ip="10.1.2.3", locale="fr"),
    ],
)
@pytest.mark.parametrize("which", ["bundled", "kinds"])
def test_copies_equal_records_built_afresh(
    query: dict[str, Any], req: RequestInfo, which: str, rules: RuleTable
) -> None:
    table = rules if which == "bundled" else KINDS
    builder = builder_for(table)
    parsed = msgspec.convert(query, FlowQuery)
    for n, begin in enumerate((1_700_000_000_000, 1_700_000_123_456)):  # a miss, then a hit
        flow_id, device_id = f"{n:x}" * 64, f"{n + 7:x}" * 32
        got = builder.begin_flow(parsed, flow_id, begin, device_id, req)
        want = fresh(builder, parsed, flow_id, begin, device_id, req)
        assert as_json(got) == as_json(want)
        assert len(got) >= 1
    assert len(builder._flow_shapes) == 1


def test_kinds_table_makes_every_kind_of_record() -> None:
    # The table above must exercise what it claims, or the comparison proves little.
    builder = builder_for(KINDS)
    query = msgspec.convert(QUERIES[2], FlowQuery)
    req = RequestInfo(received=5, user_agent=UA, ip="127.0.0.1")
    out = builder.begin_flow(query, "f" * 64, 100, "d" * 32, req)
    types = [(e.event_type, e.time, e.device_id) for e in out.amplitude]
    assert types == [
        ("fxa_login - begin", 100, None),  # minimal
        ("fxa_email - view", 100, "d" * 32),
        ("fxa_login - view", 103, "d" * 32),  # also, delayed
    ]
    assert out.amplitude[1].event_properties["campaign"] == "c1"
    assert [(v.name, v.time, v.ip, v.properties) for v in out.vwo] == [
        ("email_viewed", 100, "127.0.0.1", {"utm_source": "s"})
    ]
    assert [f.flow_id for f in out.flow] == ["f" * 64] * 2
    # The next start from another address (no location either) takes the shape kept above.
    again = builder.begin_flow(
        query, "e" * 64, 200, "c" * 32, msgspec.structs.replace(req, ip="10.0.0.9")
    )
    assert len(builder._flow_shapes) == 1
    assert [(v.time, v.ip) for v in again.vwo] == [(200, "10.0.0.9")]


def test_each_flow_start_gets_its_own_user_properties() -> None:
    builder = builder_for(KINDS)
    query = msgspec.convert(QUERIES[1], FlowQuery)
    req = RequestInfo(received=5, user_agent=UA)
    first = builder.begin_flow(query, "1" * 64, 1, "a" * 32, req)
    second = builder.begin_flow(query, "2" * 64, 2, "b" * 32, req)
    a, b = first.amplitude[1], second.amplitude[1]
    assert a.user_properties is not b.user_properties
    assert (a.user_properties["flow_id"], b.user_properties["flow_id"]) == ("1" * 64, "2" * 64)
    assert list(a.user_properties) == list(b.user_properties)  # the same key order
    assert (a.device_id, a.session_id, b.device_id, b.session_id) == ("a" * 32, 1, "b" * 32, 2)


def test_what_differs_between_requests_makes_a_new_shape(rules: RuleTable) -> None:
    builder = builder_for(rules)
    query = msgspec.convert(QUERIES[1], FlowQuery)
    other = msgspec.convert({**QUERIES[1], "entrypoint": "other"}, FlowQuery)
    base = RequestInfo(received=5, user_agent=UA, ip="127.0.0.1", accept_language="en")
    variants = [
        base,
        msgspec.structs.replace(base, user_agent="curl/8"),
        msgspec.structs.replace(base, accept_language="de"),
        msgspec.structs.replace(base, dnt=True),
        msgspec.structs.replace(base, locale="fr"),
    ]
    for req in variants:
        got = builder.begin_flow(query, "1" * 64, 1, "a" * 32, req)
        assert as_json(got) == as_json(fresh(builder, query, "1" * 64, 1, "a" * 32, req))
    builder.begin_flow(other, "1" * 64, 1, "a" * 32, base)
    assert len(builder._flow_shapes) == len(variants) + 1


def test_shapes_are_bounded_and_long_headers_not_kept(rules: RuleTable) -> None:
    builder = builder_for(rules)
    query = msgspec.convert(QUERIES[1], FlowQuery)
    for n in range(MAX_SHAPES + 10):  # millions of distinct User-Agents would do the same
        builder.begin_flow(
            query, "1" * 64, 1, "a" * 32, RequestInfo(received=5, user_agent=f"ua{n}")
        )
        assert len(builder._flow_shapes) <= MAX_SHAPES
    builder._flow_shapes.clear()
    long = RequestInfo(received=5, user_agent="x" * 4000)
    out = builder.begin_flow(query, "1" * 64, 1, "a" * 32, long)
    assert as_json(out) == as_json(fresh(builder, query, "1" * 64, 1, "a" * 32, long))
    assert not builder._flow_shapes


def test_a_rules_reload_forgets_the_shapes(rules: RuleTable) -> None:
    builder = builder_for(rules)
    query = msgspec.convert({"form_type": "email"}, FlowQuery)
    req = RequestInfo(received=5, user_agent=UA)
    before = builder.begin_flow(query, "1" * 64, 1, "a" * 32, req)
    assert [e.event_type for e in before.amplitude] == ["fxa_email_first - view"]
    builder.use(RuleSet(KINDS))
    after = builder.begin_flow(query, "1" * 64, 1, "a" * 32, req)
    assert [e.event_type for e in after.amplitude][:2] == ["fxa_login - begin", "fxa_email - view"]


def test_the_location_is_part_of_the_shape(rules: RuleTable) -> None:
    # flow-event.js and amplitude.ts take country and region from the client's address:
    # two addresses in one country share a shape, another country makes its own.
    geo = GeoDB()
    builder = Pipeline(RuleSet(rules), FlowSigner("k"), Stats(), geo=geo)
    query = msgspec.convert(QUERIES[1], FlowQuery)
    seen = []
    for ip in ("81.2.69.160", "8.8.8.8", "81.2.69.160"):
        req = RequestInfo(received=5, user_agent=UA, ip=ip)
        got = builder.begin_flow(query, "1" * 64, 1, "a" * 32, req)
        assert as_json(got) == as_json(fresh(builder, query, "1" * 64, 1, "a" * 32, req))
        seen.append((got.flow[0].countryCode, got.amplitude[0].country))
    assert seen == [("GB", "United Kingdom"), ("US", "United States"), ("GB", "United Kingdom")]
    assert len(builder._flow_shapes) == 2
