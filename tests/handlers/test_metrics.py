"""`POST /metrics` through a real loopback server into an in-memory sink."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.enrich.flow import now_ms
from router.mapping.builder import event_plan
from router.sinks.memory import MemorySink
from router.state import DISPATCHER, STATS
from router.stats import Stats

from ..conftest import Client
from ..support.bodies import body, flow

EXAMPLE_BODY = (Path(__file__).parents[1] / "data" / "post-metrics-body.json").read_bytes()


async def settle(client: Client) -> None:
    """Wait until every accepted batch has reached the sinks."""
    await client.app[DISPATCHER].flush()


async def test_batch_is_accepted_and_mapped(client: Client, sink: MemorySink) -> None:
    data = body(
        [("screen.signin", 100), ("flow.signin.engage", 1800), ("flow.signin.submit", 4900)]
    )
    resp = await client.post("/metrics", json=data)
    assert resp.status == 200
    assert await resp.json() == {"success": True}
    await settle(client)
    types = [e.event_type for e in sink.amplitude]
    assert types == ["fxa_login - view", "fxa_login - engage", "fxa_login - submit"]
    first = sink.amplitude[0]
    assert first.device_id == data["deviceId"]
    assert first.session_id == data["flowBeginTime"]
    assert first.user_id is None  # uid "none" is absent
    assert first.language == "en-US"
    assert first.event_properties == {"service": "sync"}
    assert first.user_properties["flow_id"] == data["flowId"]
    assert first.user_properties["entrypoint"] == "firstrun"
    assert "utm_term" not in first.user_properties  # "none"
    assert first.user_properties["$append"] == {"fxa_services_used": "sync"}
    flows = [f.event for f in sink.flow]
    assert flows == ["flow.signin.view", "flow.signin.engage", "flow.signin.submit"]


async def test_event_time_corrects_client_clock_skew(client: Client, sink: MemorySink) -> None:
    # The client's clock is an hour behind the server's.
    skew = 3_600_000
    flow_id, begin = flow(begin_ago_ms=60_000)
    client_now = now_ms() - skew
    data = body(
        [("flow.signin.submit", 4000)],
        flowId=flow_id,
        flowBeginTime=begin,
        startTime=client_now - 5000,
        flushTime=client_now,
    )
    before = now_ms()
    resp = await client.post("/metrics", json=data)
    after = now_ms()
    assert resp.status == 200
    await settle(client)
    (event,) = sink.amplitude
    # time = startTime + offset + (received - flushTime), received in [before, after]
    assert before - 1000 <= event.time <= after - 1000
    (flow_event,) = sink.flow
    assert flow_event.flow_time == flow_event.time - begin


async def test_flow_begin_uses_flow_begin_time(client: Client, sink: MemorySink) -> None:
    data = body([("flow.begin", 0)])
    assert (await client.post("/metrics", json=data)).status == 200
    await settle(client)
    (event,) = sink.flow
    assert event.event == "flow.begin"
    assert event.time == data["flowBeginTime"]
    assert event.flow_time == 0


async def test_renames_loaded_timing_and_screen(client: Client, sink: MemorySink) -> None:
    data = body(
        [("loaded", 10), ("flow.timing.rendered.1234", 20), ("screen.signup", 30)],
        initialView="signup",
    )
    assert (await client.post("/metrics", json=data)).status == 200
    await settle(client)
    by_name = {f.event: f for f in sink.flow}
    assert set(by_name) == {"flow.performance.signup", "flow.timing.rendered", "flow.signup.view"}
    assert by_name["flow.timing.rendered"].flow_time == 1234
    assert [e.event_type for e in sink.amplitude] == ["fxa_reg - view"]


async def test_timing_names_without_a_finite_number_drop_only_that_event(
    client: Client, sink: MemorySink
) -> None:
    # int(float("inf")) raises OverflowError, not ValueError: it once escaped the
    # deferred processing and lost every batch answered in that loop turn.
    data = body(
        [
            ("flow.timing.rendered.inf", 10),
            ("flow.timing.rendered.nan", 11),
            ("flow.timing.rendered.-1e999", 12),
            ("flow.timing.rendered.x", 13),
            ("flow.timing.rendered.-5", 14),
            ("flow.signin.submit", 20),
        ]
    )
    assert (await client.post("/metrics", json=data)).status == 200
    other = body([("flow.signin.engage", 30)])
    assert (await client.post("/metrics", json=other)).status == 200
    await settle(client)
    assert [(f.event, f.flow_time) for f in sink.flow if f.event.startswith("flow.timing.")] == [
        ("flow.timing.rendered", -5)
    ]
    assert {f.event for f in sink.flow} == {
        "flow.timing.rendered",
        "flow.signin.submit",
        "flow.signin.engage",
    }
    stats = client.app[STATS]
    assert stats.get("metrics.events.dropped", reason="bad_time") == 4


def test_event_plans() -> None:
    # What a name alone decides; the kept steps' bound is in mapping/test_request_shapes.py.
    assert event_plan("screen.s1") == ("screen.s1", None, "flow.s1.view")
    assert event_plan("flow.signin.submit") == ("flow.signin.submit", None, "flow.signin.submit")
    assert event_plan("flow.timing.t.12.7") == ("flow.timing.t.12", 7, "flow.timing.t.12")
    assert event_plan("flow.timing.t.nan") == (None, None, None)
    assert event_plan("loaded") == ("loaded", None, None)


async def test_dnt_removes_utm_from_flow_events(client: Client, sink: MemorySink) -> None:
    data = body([("flow.signin.submit", 10)])
    await client.post("/metrics", json=data)
    await client.post("/metrics", json=data, headers={"DNT": "1"})
    await settle(client)
    tracked, untracked = sink.flow
    assert tracked.utm_source == "blog" and tracked.utm_campaign == "fx-welcome"
    assert untracked.utm_source is None and untracked.utm_campaign is None
    assert untracked.entrypoint == "firstrun" and untracked.context == "web"


async def test_flow_event_strings_cut_to_100(client: Client, sink: MemorySink) -> None:
    data = body([("flow.signin.submit", 10)])
    await client.post("/metrics", json=data, headers={"User-Agent": "x" * 300})
    await settle(client)
    (event,) = sink.flow
    assert event.userAgent == "x" * 100


async def test_text_plain_body_is_json(client: Client, sink: MemorySink) -> None:
    data = body([("flow.signin.submit", 10)])
    resp = await client.post(
        "/metrics", data=json.dumps(data), headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert resp.status == 200
    await settle(client)
    assert len(sink.amplitude) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"flowId": None}, "missing_flow_id"),
        ({"flowBeginTime": None}, "missing_flow_begin_time"),
        ({"flowBeginTime": 1}, "expired_flow_begin_time"),
        ({"flowId": "ab" * 32}, "invalid_signature"),
    ],
)
async def test_bad_flow_drops_whole_batch(
    client: Client, sink: MemorySink, stats: Stats, change: dict[str, object], reason: str
) -> None:
    data = body([("flow.signin.submit", 10), ("screen.signin", 20)])
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    resp = await client.post("/metrics", json=data)
    assert resp.status == 200
    await settle(client)
    assert sink.records == []
    assert stats.get("metrics.batch.dropped", reason=reason) == 1
    assert stats.get("metrics.events.dropped", reason=reason) == 2


async def test_flow_from_another_key_is_refused(
    client: Client, sink: MemorySink, stats: Stats
) -> None:
    flow_id, begin = flow(key="some-other-key")
    data = body([("flow.signin.submit", 10)], flowId=flow_id, flowBeginTime=begin)
    assert (await client.post("/metrics", json=data)).status == 200
    await settle(client)
    assert sink.records == []
    assert stats.get("metrics.batch.dropped", reason="invalid_signature") == 1


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            {"events": [{"type": "a", "offset": 1}] * 3 + [{"type": "b", "offset": -1}]},
            "$.events[3].offset",
        ),
        ({"events": [{"type": "bad/type", "offset": 1}]}, "$.events[0].type"),
        ({"events": [{"offset": 1}]}, "$.events[0]"),
        ({"flowId": "xyz"}, "$.flowId"),
        ({"deviceId": "nope"}, "$.deviceId"),
        ({"service": "evil"}, "$.service"),
        ({"lang": "EN_us"}, "$.lang"),
        ({"utm_source": "a b"}, "$.utm_source"),
        ({"screen": {"width": "wide"}}, "$.screen.width"),
        ({"experiments": [{"choice": "x"}]}, "$.experiments[0]"),
        # List items checked after decoding (events.SYNC_ENGINE, EXPERIMENT_NAME, NEWSLETTER).
        ({"syncEngines": ["tabs", "Tabs"]}, "$.syncEngines[1]"),
        (
            {"experiments": [{"choice": "a", "group": "b"}, {"choice": "a b", "group": "b"}]},
            "$.experiments[1].choice",
        ),
        ({"experiments": [{"choice": "a", "group": "b/c"}]}, "$.experiments[0].group"),
        ({"newsletters": ["ok", "not ok"]}, "$.newsletters[1]"),
        ({"syncEngines": ["x" * 65]}, "$.syncEngines[0]"),
        ({"navigationTiming": {"a": {"b": {"c": 1}}}}, "$.navigationTiming[...]"),
        ({"duration": 10**12}, "$.duration"),
        ({"flushTime": 0}, "$.flushTime"),
        ({"events": [{"type": "flow.signin.submit", "offset": 10**7}]}, "$.events[0].offset"),
    ],
)
async def test_bad_body_is_400_naming_the_field(
    client: Client, sink: MemorySink, stats: Stats, change: dict[str, object], path: str
) -> None:
    data = body([("flow.signin.submit", 10)])
    data.update(change)
    resp = await client.post("/metrics", json=data)
    assert resp.status == 400
    payload = await resp.json()
    assert payload["statusCode"] == 400
    assert payload["validation"]["keys"] == [path], payload
    await settle(client)
    assert sink.records == []
    assert stats.total("request.rejected") == 1


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'{"events": 5}', b"\xff\xfe"])
async def test_unparseable_body_is_400(client: Client, raw: bytes) -> None:
    resp = await client.post("/metrics", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "Bad Request"


async def test_huge_body_is_413(client: Client, stats: Stats) -> None:
    resp = await client.post("/metrics", data=b"[" + b"1," * 400_000 + b"1]")
    assert resp.status == 413
    assert (
        stats.get(
            "request.rejected", endpoint="/metrics", reason="request entity too large", status="413"
        )
        == 1
    )


async def test_too_many_events_is_400(client: Client) -> None:
    data = body([("flow.signin.submit", 1)] * 1001)
    resp = await client.post("/metrics", json=data)
    assert resp.status == 400
    assert (await resp.json())["validation"]["keys"] == ["$.events"]


async def test_unknown_event_names_are_counted_not_refused(
    client: Client, sink: MemorySink, stats: Stats
) -> None:
    data = body([("some.unknown.thing", 1), ("flow.signin.submit", 2)])
    assert (await client.post("/metrics", json=data)).status == 200
    await settle(client)
    assert len(sink.amplitude) == 1
    assert stats.get("metrics.events.unmapped") == 1


async def test_experiments_and_sync_engines_in_user_properties(
    client: Client, sink: MemorySink
) -> None:
    data = body(
        [("flow.signin.submit", 2)],
        experiments=[{"choice": "emailFirst", "group": "treatment"}],
        syncEngines=["bookmarks", "history"],
    )
    assert (await client.post("/metrics", json=data)).status == 200
    await settle(client)
    (event,) = sink.amplitude
    assert event.user_properties["sync_engines"] == ["bookmarks", "history"]
    assert event.user_properties["$append"]["experiments"] == ["email_first_treatment"]


async def test_oauth_client_service_name(client: Client, sink: MemorySink) -> None:
    data = body([("flow.signin.submit", 2)], service="5882386c6d801776")
    await client.post("/metrics", json=data)
    data = body([("flow.signin.submit", 2)], service="0000000000000000")
    await client.post("/metrics", json=data)
    await settle(client)
    known, unknown = sink.amplitude
    assert known.event_properties == {
        "service": "fx-monitor",
        "oauth_client_id": "5882386c6d801776",
    }
    assert unknown.event_properties["service"] == "undefined_oauth"


async def test_reference_example_body_decodes(client: Client) -> None:
    raw = EXAMPLE_BODY
    # Its made-up flowId does not verify: accepted, then dropped and counted.
    resp = await client.post("/metrics", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 200
