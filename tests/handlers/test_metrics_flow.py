"""`GET /metrics-flow`: flows, parameters, CORS and engage pings."""

from __future__ import annotations

import asyncio
import os
import re
import uuid

import pytest

from router.app import make_app
from router.config import Settings, override
from router.enrich.flow import FlowSigner, now_ms
from router.handlers import metrics_flow
from router.handlers.metrics_flow import device_id_hex
from router.sinks.memory import MemorySink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import CLIENT_ID, FLOW_KEY, ORIGIN, AiohttpClient, Client
from ..support.delivery import UID


async def settle(client: Client) -> None:
    await client.app[DISPATCHER].flush()


async def test_starts_a_signed_flow(client: Client, sink: MemorySink) -> None:
    before = now_ms()
    resp = await client.get("/metrics-flow", params={"entrypoint": "firstrun", "utm_source": "x"})
    assert resp.status == 200
    data = await resp.json()
    assert set(data) == {"deviceId", "flowBeginTime", "flowId"}
    assert re.fullmatch(r"[0-9a-f]{64}", data["flowId"])
    assert re.fullmatch(r"[0-9a-f]{32}", data["deviceId"])
    assert before <= data["flowBeginTime"] <= now_ms()
    signer = FlowSigner(FLOW_KEY)
    assert signer.check(data["flowId"], data["flowBeginTime"], now_ms()) is None
    await settle(client)
    (begin,) = sink.flow
    assert begin.event == "flow.begin"
    assert begin.flow_time == 0 and begin.time == data["flowBeginTime"]
    assert begin.flow_id == data["flowId"]
    assert begin.entrypoint == "firstrun" and begin.utm_source == "x"


async def test_flow_starts_of_one_loop_turn_are_all_recorded(
    client: Client, sink: MemorySink
) -> None:
    # Answered first, processed together right after (router/ingest.py): none is lost.
    answers = await asyncio.gather(
        *(client.get("/metrics-flow", params={"form_type": "email"}) for _ in range(20))
    )
    flow_ids = {(await resp.json())["flowId"] for resp in answers}
    await settle(client)
    assert len(flow_ids) == 20
    assert sorted(f.flow_id for f in sink.flow) == sorted(i for i in flow_ids for _ in range(2))
    assert {a.user_properties["flow_id"] for a in sink.amplitude} == flow_ids


async def test_strict_mode_flow_starts_are_recorded_by_the_handler(
    aiohttp_client: AiohttpClient, settings: Settings, sink: MemorySink, stats: Stats
) -> None:
    strict = override(settings, spool={"path": settings.spool.path, "strict": True})
    client = await aiohttp_client(make_app(strict, sinks=[sink], stats=stats))
    resp = await client.get("/metrics-flow", params={"form_type": "email"})
    data = await resp.json()
    # The handler submits (and waits for the spool when a sink is durable) itself.
    assert stats.get("sink.received", sink="memory") == 3
    await settle(client)
    assert [f.flow_id for f in sink.flow] == [data["flowId"]] * 2


def test_flow_ids_from_a_given_salt_verify() -> None:
    signer = FlowSigner(FLOW_KEY)
    flow_id, begin = signer.create(now_ms() - 1000, salt=bytes(range(16)))
    assert flow_id[:32] == bytes(range(16)).hex()
    assert signer.check(flow_id, begin, now_ms()) is None
    assert signer.create(begin, salt=bytes(range(16))) == (flow_id, begin)


@pytest.mark.parametrize(
    ("form_type", "amplitude", "flow_event"),
    [
        ("email", "fxa_email_first - view", "flow.enter-email.view"),
        ("button", "fxa_rp_button - view", "flow.rp-button.view"),
        ("subscribe", "fxa_subscribe - view", "flow.subscribe.view"),
    ],
)
async def test_form_type_events(
    client: Client, sink: MemorySink, form_type: str, amplitude: str, flow_event: str
) -> None:
    resp = await client.get("/metrics-flow", params={"form_type": form_type})
    data = await resp.json()
    await settle(client)
    assert [f.event for f in sink.flow] == ["flow.begin", flow_event]
    (event,) = sink.amplitude
    assert event.event_type == amplitude
    assert event.time == data["flowBeginTime"]
    assert event.device_id == data["deviceId"]


async def test_form_type_other_emits_only_begin(client: Client, sink: MemorySink) -> None:
    await client.get("/metrics-flow", params={"form_type": "other"})
    await settle(client)
    assert [f.event for f in sink.flow] == ["flow.begin"]
    assert sink.amplitude == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("entrypoint", "bad entry"),
        ("entrypoint_experiment", "a/b"),
        ("entrypoint_variation", "<x>"),
        ("form_type", "password"),
        ("product_id", "123"),
        ("service", "evil"),
        ("context", "UPPER"),
        ("utm_source", "a" * 129),
        ("utm_campaign", "a b"),
        ("utm_content", "x!"),
        ("utm_medium", "$"),
        ("utm_term", "'"),
    ],
)
async def test_invalid_parameter_is_400(
    client: Client, sink: MemorySink, name: str, value: str
) -> None:
    resp = await client.get("/metrics-flow", params={name: value})
    assert resp.status == 400
    assert (await resp.json())["validation"]["keys"] == [f"$.{name}"]
    await settle(client)
    assert sink.records == []


async def test_allowed_origin_gets_cors(client: Client) -> None:
    resp = await client.get("/metrics-flow", headers={"Origin": ORIGIN})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_other_origin_is_refused_and_counted(
    client: Client, sink: MemorySink, stats: Stats
) -> None:
    resp = await client.get("/metrics-flow", headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert stats.get("metrics_flow.bad_origin") == 1
    await settle(client)
    assert sink.records == []


async def test_preflight(client: Client) -> None:
    ok = await client.options("/metrics-flow", headers={"Origin": ORIGIN})
    assert ok.status == 204 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    bad = await client.options("/metrics-flow", headers={"Origin": "https://evil.example"})
    assert bad.status == 403


async def test_engage_ping(client: Client, sink: MemorySink) -> None:
    params = {"event_type": "engage", "service": CLIENT_ID, "uid": UID}
    resp = await client.get("/metrics-flow", params=params, headers={"Origin": ORIGIN})
    assert resp.status == 200
    data = await resp.json()
    await settle(client)
    assert sink.flow == []  # no flow.begin
    (event,) = sink.amplitude
    assert event.event_type == "fxa_rp - engage"
    assert event.user_id == UID
    assert event.time == data["flowBeginTime"]
    assert event.event_properties == {"service": "fx-monitor", "oauth_client_id": CLIENT_ID}


@pytest.mark.parametrize(
    ("params", "origin", "reason"),
    [
        ({"service": CLIENT_ID, "uid": UID}, "https://evil.example", "bad_origin"),
        ({"service": CLIENT_ID, "uid": UID}, None, "bad_origin"),
        ({"service": "0123456789abcdef", "uid": UID}, ORIGIN, "unknown_client"),
        ({"service": CLIENT_ID}, ORIGIN, "missing_uid"),
    ],
)
async def test_engage_dropped_silently(
    client: Client,
    sink: MemorySink,
    stats: Stats,
    params: dict[str, str],
    origin: str | None,
    reason: str,
) -> None:
    headers = {"Origin": origin} if origin else {}
    resp = await client.get(
        "/metrics-flow", params={"event_type": "engage", **params}, headers=headers
    )
    assert resp.status == 200
    await settle(client)
    assert sink.records == []
    assert stats.get("metrics_flow.engage.dropped", reason=reason) == 1


async def test_engage_uid_is_validated(client: Client) -> None:
    params = {"event_type": "engage", "service": CLIENT_ID, "uid": "not-a-uid"}
    resp = await client.get("/metrics-flow", params=params, headers={"Origin": ORIGIN})
    assert resp.status == 400


def test_device_ids_are_random_version_4_uuids() -> None:
    # FxA's get-metrics-flow.js: deviceId = uuid.v4().replace(/-/g, '').
    ids = {device_id_hex(os.urandom(16)) for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.hex == value


async def test_queries_that_decode_alike_are_parsed_apart(client: Client) -> None:
    # Cached by the raw query string: %26 is a literal "&" inside a value, not a separator.
    plain = await client.get("/metrics-flow?entrypoint=a&utm_source=b")
    encoded = await client.get("/metrics-flow?entrypoint=a%26utm_source=b")
    again = await client.get("/metrics-flow?entrypoint=a&utm_source=b")
    assert (plain.status, again.status) == (200, 200)
    # "a&utm_source=b" is not a valid entrypoint: refused, however often the other is seen.
    assert encoded.status == 400
    assert (await encoded.json())["validation"]["keys"] == ["$.entrypoint"]


async def test_the_query_cache_stays_bounded(client: Client) -> None:
    metrics_flow._QUERIES.clear()
    for i in range(metrics_flow.MAX_QUERIES + 50):
        resp = await client.get(f"/metrics-flow?entrypoint=e{i}")
        assert resp.status == 200
    assert 0 < len(metrics_flow._QUERIES) <= metrics_flow.MAX_QUERIES
    # A query longer than MAX_QUERY_LENGTH is answered but not remembered.
    long = f"entrypoint={'x' * 1000}&utm_source={'y' * 100}"
    assert len(long) > metrics_flow.MAX_QUERY_LENGTH
    assert (await client.get(f"/metrics-flow?{long}")).status == 200
    assert long not in metrics_flow._QUERIES
