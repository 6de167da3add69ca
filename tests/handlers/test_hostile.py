"""Any body to either endpoint gets 200 or 4xx, never 500."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.app import make_app
from router.config import load_settings, override
from router.events import MetricsBody, metrics_body_decoder
from router.ruletable import RuleTable

from ..support.bodies import body

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "events",
        "flowId",
        "flowBeginTime",
        "deviceId",
        "startTime",
        "flushTime",
        "duration",
        "service",
        "lang",
        "uid",
        "screen",
        "experiments",
        "marketing",
        "syncEngines",
        "navigationTiming",
        "utm_source",
        "entrypoint",
        "initialView",
    ]
)
mutations = st.dictionaries(field_names, json_values, max_size=5)
event_lists = st.lists(
    st.fixed_dictionaries({"type": st.text(max_size=30), "offset": st.integers()}), max_size=5
)
raw_bodies = st.binary(max_size=200)
query_params = st.dictionaries(
    st.sampled_from(
        [
            "entrypoint",
            "form_type",
            "service",
            "utm_source",
            "context",
            "product_id",
            "event_type",
            "uid",
            "utm_term",
            "other",
        ]
    ),
    st.text(max_size=40),
    max_size=5,
)

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _client_app(rules: RuleTable) -> Any:
    conf = override(load_settings(environ={}), flow={"key": "k"}, sinks={"log": None})
    from router.sinks.memory import MemorySink

    return make_app(conf, rules=rules, sinks=[MemorySink(keep=False)])


@SETTINGS
@given(mutation=mutations, events=event_lists)
async def test_post_metrics_never_500(
    aiohttp_client: Any, rules: RuleTable, mutation: dict[str, Any], events: list[Any]
) -> None:
    client = await aiohttp_client(_client_app(rules))
    data = body([("flow.signin.submit", 1)])
    data.update(mutation)
    data["events"] = events or data["events"]
    resp = await client.post("/metrics", data=json.dumps(data))
    assert resp.status == 200 or 400 <= resp.status < 500, await resp.text()
    await client.close()


@SETTINGS
@given(raw=raw_bodies)
async def test_post_metrics_raw_bytes_never_500(
    aiohttp_client: Any, rules: RuleTable, raw: bytes
) -> None:
    client = await aiohttp_client(_client_app(rules))
    resp = await client.post("/metrics", data=raw)
    assert 400 <= resp.status < 500
    await client.close()


@SETTINGS
@given(params=query_params)
async def test_metrics_flow_never_500(
    aiohttp_client: Any, rules: RuleTable, params: dict[str, str]
) -> None:
    client = await aiohttp_client(_client_app(rules))
    resp = await client.get("/metrics-flow", params=params)
    assert resp.status == 200 or 400 <= resp.status < 500, await resp.text()
    await client.close()


async def test_deep_nesting_is_refused(aiohttp_client: Any, rules: RuleTable) -> None:
    client = await aiohttp_client(_client_app(rules))
    deep = "[" * 100_000 + "]" * 100_000
    resp = await client.post("/metrics", data='{"events": [], "navigationTiming": ' + deep + "}")
    assert resp.status in (400, 413)
    resp = await client.post("/metrics", data='{"marketing": ' + deep + "}")
    assert resp.status in (400, 413)


async def test_many_distinct_event_names_do_not_grow_the_cache(rules: RuleTable) -> None:
    from router.enrich.flow import FlowSigner, now_ms
    from router.events import metrics_body_decoder
    from router.mapping import Pipeline, RequestInfo
    from router.ruletable.ruleset import RuleSet
    from router.stats import Stats

    conf_key = "k"
    pipeline = Pipeline(RuleSet(rules), FlowSigner(conf_key), Stats())
    flow_id, begin = FlowSigner(conf_key).create(now_ms() - 1000)
    for chunk in range(20):
        names = [(f"hostile.{chunk}.{i}", 1) for i in range(10_000)]
        data = body(names, flowId=flow_id, flowBeginTime=begin)
        batch = metrics_body_decoder.decode(json.dumps(data).encode())
        pipeline.process_batch(batch, RequestInfo(received=now_ms()))
    info = getattr(rules, "cache_info", None)
    if callable(info):
        assert info().currsize <= info().maxsize


def test_pattern_memo_stays_bounded() -> None:
    from router.errors import BadRequest
    from router.events import EVENT_TYPE, Checked

    checked = Checked(r"^[a-z.]+$")
    letters = str.maketrans("0123456789", "abcdefghij")
    for i in range(3 * Checked.MAX_REMEMBERED):
        name = str(i).translate(letters)
        checked.check("x" * 200 + "." + name, "$.x")  # long: checked, never kept
        checked.check("short." + name, "$.x")
    assert len(checked.seen) <= Checked.MAX_REMEMBERED
    assert all(len(v) <= Checked.MAX_LENGTH for v in checked.seen)
    try:
        checked.check("BAD", "$.events[7].type")
    except BadRequest as exc:
        assert exc.path == "$.events[7].type"
    else:
        raise AssertionError("a bad value passed")
    assert "BAD" not in checked.seen and EVENT_TYPE.MAX_REMEMBERED == Checked.MAX_REMEMBERED


def test_passed_pages_stay_bounded_and_ids_are_still_checked() -> None:
    from router.errors import BadRequest
    from router.events import (
        _PASSED_PAGES,
        MAX_PAGE_CHARACTERS,
        MAX_PASSED_PAGES,
        check_patterns,
    )

    def decoded(**fields: object) -> MetricsBody:
        data = {"events": [{"type": "flow.begin", "offset": 0}], **fields}
        return metrics_body_decoder.decode(json.dumps(data).encode())

    # A flood of distinct pages: kept up to the bound; long ones checked, never kept.
    for i in range(MAX_PASSED_PAGES + 100):
        check_patterns(decoded(utm_term=f"t{i}", entrypoint=f"e{i}"))
        assert len(_PASSED_PAGES) <= MAX_PASSED_PAGES
    long = "x" * (MAX_PAGE_CHARACTERS // 2 + 1)
    check_patterns(decoded(entrypoint=long, entryPoint=long))
    assert not any(long in page for page in _PASSED_PAGES)
    # A page that passed before, with a bad flow id, device id or uid: still a 400.
    check_patterns(decoded(context="web", flowId="ab" * 32))
    for field in ("flowId", "deviceId", "uid"):
        try:
            check_patterns(decoded(context="web", **{field: "Z" * 32}))
        except BadRequest as exc:
            assert exc.path == f"$.{field}"
        else:
            raise AssertionError(f"a bad {field} passed")
    # A page that never passed names its first bad field, in the body's field order,
    # however often it is sent (a refused page is not kept).
    for _ in range(2):
        try:
            check_patterns(decoded(context="BAD CONTEXT", utm_source="bad source!"))
        except BadRequest as exc:
            assert exc.path == "$.context"
        else:
            raise AssertionError("a bad context passed")
