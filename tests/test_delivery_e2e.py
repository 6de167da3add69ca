"""End to end: /metrics-flow and /metrics through the router to fake Amplitude and VWO."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient
from blockbuster import BlockBuster

from fakes.amplitude import FakeAmplitude
from fakes.vwo import FakeVwo
from router.app import make_app
from router.config import (
    AmplitudeSinkSettings,
    MemorySinkSettings,
    Settings,
    VwoSinkSettings,
    override,
)
from router.dispatch import MemoryBuffer, SinkRunner
from router.ids import hash_id, insert_id
from router.ruletable import Mapping, RuleTable, default_rules_path
from router.ruletable.registry import load_registry
from router.sinks.memory import MemorySink
from router.sinks.vwo import visitor_id
from router.state import DISPATCHER
from router.stats import Stats

from .conftest import AiohttpClient
from .support.bodies import body
from .support.delivery import HMAC_KEY, UID, AiohttpServer, amplitude_sink, event

SETTINGS = Path(__file__).parent / "data" / "vwo-settings.json"
Client = TestClient[web.Request, web.Application]


# Loaded once, outside the event loop (blockbuster watches it in the tests).
REGISTRY = load_registry([default_rules_path()])


def mapping(event_type: str, vwo: str | None = None, vwo_fields: list[str] | None = None) -> Any:
    group, _, event_name = event_type.partition(" - ")
    return msgspec.convert(
        {
            "event_type": event_type,
            "group": group,
            "event": event_name,
            "category": None,
            "target": None,
            "properties": {},
            "fields": [],
            "also": [],
            "minimal": False,
            "vwo": vwo,
            "vwo_fields": vwo_fields or [],
            "rule": f"test: {event_type}",
        },
        Mapping,
    )


class VwoRules(RuleTable):
    """A tiny rule table with VWO conversions, independent of the bundled rules."""

    exact_count = 5
    fuzzy_count = 0

    def __init__(self) -> None:
        self.table = {
            "flow.begin": mapping("fxa_flow - begin"),
            "screen.enter-email": mapping("fxa_email_first - view"),
            "screen.signin": mapping("fxa_login - view"),
            "flow.signin.submit": mapping("fxa_login - submit", "signin_complete", ["service"]),
            "flow.signup.submit": mapping("fxa_reg - submit", "not_a_metric"),
        }

    def match(self, name: str) -> Mapping | None:
        return self.table.get(name)


async def router_for(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    amplitude: str,
    vwo: str,
    tmp_path: Path,
    stats: Stats,
    memory: bool = False,
) -> Client:
    amplitude_settings = AmplitudeSinkSettings(
        api_key="test-api-key",
        hmac_key=HMAC_KEY,
        url=f"{amplitude}/batch",
        identify_url=f"{amplitude}/identify",
        flush_interval_ms=0,
        retry_base_ms=1,
        retry_cap_ms=5,
        throttle_pause_seconds=0.05,
        request_timeout_seconds=5.0,
    )
    vwo_settings = VwoSinkSettings(
        account_id=123456,
        sdk_key="example-sdk-key",
        settings_path=str(SETTINGS),
        url=vwo,
        flush_interval_ms=0,
        retry_base_ms=1,
        retry_cap_ms=5,
    )
    settings = override(
        settings,
        sinks={
            "log": None,
            "memory": MemorySinkSettings() if memory else None,
            "amplitude": amplitude_settings,
            "vwo": vwo_settings,
        },
        deadletter={"path": str(tmp_path / "dead.jsonl")},
    )
    app = make_app(settings, rules=VwoRules(), stats=stats, registry=REGISTRY)
    return await aiohttp_client(app)


async def test_flow_arrives_at_both_under_faults(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    settings: Settings,
    tmp_path: Path,
    blockbuster: BlockBuster,
) -> None:
    amp = FakeAmplitude(faults=["ingest_then_500", "reset", 503, "ingest_then_500", 502])
    vwo = FakeVwo(faults=[500, "reset"])
    amp_server = await aiohttp_server(amp.app)
    vwo_server = await aiohttp_server(vwo.app)
    stats = Stats()
    client = await router_for(
        aiohttp_client,
        settings,
        str(amp_server.make_url("")),
        str(vwo_server.make_url("")),
        tmp_path,
        stats,
    )
    resp = await client.get("/metrics-flow", params={"form_type": "email"})
    assert resp.status == 200
    flow = await resp.json()
    data = body(
        [("screen.signin", 100), ("flow.signin.submit", 4000), ("flow.signup.submit", 4500)],
        flowId=flow["flowId"],
        flowBeginTime=flow["flowBeginTime"],
        deviceId=flow["deviceId"],
        uid=UID,
    )
    assert (await client.post("/metrics", json=data)).status == 200
    await amp.wait_for(lambda: len(amp.ingested) >= 5)
    await vwo.wait_for(lambda: len(vwo.events) >= 1)
    await client.app[DISPATCHER].flush()

    key = HMAC_KEY.encode()
    begin, device, hashed = flow["flowBeginTime"], flow["deviceId"], hash_id(key, UID)
    got = sorted(
        (e["event_type"], e.get("user_id"), e["device_id"], e["session_id"])
        for e in amp.ingested.values()
    )
    assert got == [
        ("fxa_email_first - view", None, device, begin),
        ("fxa_flow - begin", None, device, begin),
        ("fxa_login - submit", hashed, device, begin),
        ("fxa_login - view", hashed, device, begin),
        ("fxa_reg - submit", hashed, device, begin),
    ]
    for e in amp.ingested.values():
        raw_uid = UID if e.get("user_id") else None
        assert e["insert_id"] == insert_id(key, raw_uid, device, begin, e["event_type"], e["time"])
    assert len(amp.received) > len(amp.ingested)  # faults made it resend; counted once
    assert amp.identifications == [
        {
            "user_id": hashed,
            "device_id": device,
            "user_properties": {"$append": {"fxa_services_used": "sync"}},
        }
    ]
    ((query, d),) = vwo.events
    assert d["event"]["name"] == "signin_complete"
    assert d["visId"] == visitor_id(123456, UID)
    assert d["event"]["props"]["service"] == "sync"
    assert stats.get("sink.sent", sink="amplitude") == 5
    assert stats.get("sink.sent", sink="vwo") == 1
    assert stats.get("sink.event_not_found", sink="vwo") == 1
    assert stats.total("sink.dead_lettered") == 0
    assert not await asyncio.to_thread((tmp_path / "dead.jsonl").exists)


async def test_hung_amplitude_blocks_neither_ingest_nor_other_sinks(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    amp = FakeAmplitude(hang_all=True)
    vwo = FakeVwo()
    amp_server = await aiohttp_server(amp.app)
    vwo_server = await aiohttp_server(vwo.app)
    stats = Stats()
    client = await router_for(
        aiohttp_client,
        settings,
        str(amp_server.make_url("")),
        str(vwo_server.make_url("")),
        tmp_path,
        stats,
        memory=True,
    )
    runners = {r.sink.name: r for r in client.app[DISPATCHER].runners}
    memory = runners["memory"].sink
    assert isinstance(memory, MemorySink)
    posts = 50
    for i in range(posts):
        data = body([("flow.signin.submit", 4000 + i)], uid=UID)
        async with asyncio.timeout(2):
            assert (await client.post("/metrics", json=data)).status == 200
    # Every other sink got everything while Amplitude hangs.
    await memory.wait_for(posts * 2)  # one amplitude event + one flow event per post
    await vwo.wait_for(lambda: len(vwo.events) == posts)
    assert amp.ingested == {}
    buffer = runners["amplitude"].buffer
    assert isinstance(buffer, MemoryBuffer)  # SpoolBuffer is one
    assert amp.hung > 0 and buffer.in_flight > 0
    amp.release()
    await amp.wait_for(lambda: len(amp.ingested) == posts)


async def test_full_queue_is_counted(
    aiohttp_server: AiohttpServer, tmp_path: Path, caplog: Any
) -> None:
    amp = FakeAmplitude(hang_all=True)
    server = await aiohttp_server(amp.app)
    stats = Stats()
    sink = amplitude_sink(server, tmp_path)
    runner = SinkRunner(sink, stats, MemoryBuffer(sink.name, stats, queue_size=10, batch_size=5))
    await sink.start()
    runner.start()
    runner.submit([event(time=1 + i) for i in range(5)])
    await amp.wait_for(lambda: amp.hung == 1)
    runner.submit([event(time=100 + i) for i in range(25)])
    assert stats.get("sink.dropped", sink="amplitude", reason="queue_full") == 15
    assert any("queue full, 15 records dropped" in r.message for r in caplog.records)
    amp.release()
    await runner.close(5.0)
    assert len(amp.ingested) == 15
    assert stats.get("sink.sent", sink="amplitude") == 15
