"""The VWO sink against a fake VWO on loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiohttp.test_utils import TestServer

from fakes.vwo import FakeVwo
from router.records import VwoConversion
from router.sinks.vwo import VwoSink, metric_identifiers, visitor_id
from router.stats import Stats

from ..support.delivery import FAST, UID, AiohttpServer, deliver, read_dead_letters

SETTINGS = Path(__file__).parents[1] / "data" / "vwo-settings.json"


def vwo_sink(server: TestServer, tmp_path: Path, **overrides: object) -> VwoSink:
    options: dict[str, object] = {
        "account_id": 123456,
        "sdk_key": "example-sdk-key",
        "url": str(server.make_url("/")),
        "settings_path": str(SETTINGS),
        "backoff": FAST,
    }
    options.update(overrides)
    return VwoSink("vwo", **options)  # type: ignore[arg-type]


def conversion(name: str = "signin_complete", **kw: object) -> VwoConversion:
    return VwoConversion(
        name=name,
        user_id=UID,
        time=1_700_000_000_000,
        user_agent="Mozilla/5.0",
        ip="203.0.113.9",
        **kw,  # type: ignore[arg-type]
    )


def test_visitor_id_is_the_uuid5_chain() -> None:
    vwo = uuid.uuid5(uuid.NAMESPACE_URL, "https://vwo.com")
    expected = uuid.uuid5(uuid.uuid5(vwo, "123456"), UID).hex.upper()
    assert visitor_id(123456, UID) == expected
    assert len(expected) == 32 and expected == expected.upper() and "-" not in expected
    assert visitor_id(654321, UID) != expected


def test_metric_identifiers() -> None:
    assert metric_identifiers(SETTINGS.read_bytes()) == {
        "signup_complete",
        "signin_complete",
        "subscription_started",
    }


async def test_batch_sends_known_events_only(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    fake = FakeVwo()
    server = await aiohttp_server(fake.app)
    stats = Stats()
    async with vwo_sink(server, tmp_path) as sink:
        sink.stats = stats
        await deliver(
            sink,
            tmp_path,
            [
                conversion(properties={"service": "sync"}),
                conversion("not_a_metric"),
                conversion("subscription_started", properties={"amount": 5}),
            ],
        )
    assert fake.batch_requests == 1
    assert [d["event"]["name"] for _, d in fake.events] == [
        "signin_complete",
        "subscription_started",
    ]
    query, d = fake.events[0]
    assert query == {"a": "123456", "env": "example-sdk-key", "sn": "metrics-router", "sv": "0.1.0"}
    assert d["visId"] == visitor_id(123456, UID)
    assert d["msgId"].endswith("-1700000000000")
    assert d["event"]["time"] == 1_700_000_000_000
    assert d["event"]["props"] == {
        "service": "sync",
        "vwo_sdkName": "metrics-router",
        "vwo_sdkVersion": "0.1.0",
        "vwo_envKey": "example-sdk-key",
        "isCustomEvent": True,
    }
    assert d["visitor"] == {"props": {"vwo_fs_environment": "example-sdk-key"}}
    assert stats.get("sink.event_not_found", sink="vwo") == 1
    assert stats.get("sink.sent", sink="vwo") == 2


async def test_single_events_go_to_events_t(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    fake = FakeVwo()
    server = await aiohttp_server(fake.app)
    async with vwo_sink(server, tmp_path, batch_events=False) as sink:
        await deliver(sink, tmp_path, [conversion(), conversion("signup_complete")])
    assert fake.single_requests == 2 and fake.batch_requests == 0
    queries = sorted((q for q, _ in fake.events), key=lambda q: q["en"])
    assert [q["en"] for q in queries] == ["signin_complete", "signup_complete"]
    q = queries[0]
    assert (q["p"], q["eTime"], q["visitor_ua"], q["visitor_ip"]) == (
        "FS",
        "1700000000000",
        "Mozilla/5.0",
        "203.0.113.9",
    )


async def test_400_is_never_retried(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    fake = FakeVwo(faults=[400])
    server = await aiohttp_server(fake.app)
    async with vwo_sink(server, tmp_path) as sink:
        await deliver(sink, tmp_path, [conversion()])
    assert fake.statuses == [400]
    (dead,) = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert (dead.destination, dead.reason, dead.record["name"]) == (
        "vwo",
        "bad_request",
        "signin_complete",
    )


async def test_failures_are_retried_then_dead_lettered(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeVwo(faults=[500, "reset", 503])
    server = await aiohttp_server(fake.app)
    stats = Stats()
    async with vwo_sink(server, tmp_path) as sink:
        sink.stats = stats
        await deliver(sink, tmp_path, [conversion()])  # three failures, the fourth try succeeds
        assert len(fake.events) == 1
        fake.faults = [502] * 4
        await deliver(sink, tmp_path, [conversion("signup_complete")])
    assert stats.total("sink.retried") == 6
    (dead,) = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert dead.reason == "gave_up:http_502"


async def test_user_field_from_properties(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    fake = FakeVwo()
    server = await aiohttp_server(fake.app)
    async with vwo_sink(server, tmp_path, user_field="deviceId") as sink:
        await deliver(sink, tmp_path, [conversion(properties={"deviceId": "dev-1"}), conversion()])
    ((_, d),) = fake.events
    assert d["visId"] == visitor_id(123456, "dev-1")
    (dead,) = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert dead.reason == "missing_user_id"
