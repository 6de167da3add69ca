"""`GET /__tap__` and `metrics-router tap`: what the router does with each event, live."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.config import Settings, override
from router.sinks.memory import MemorySink
from router.state import DISPATCHER, STATS, TAP
from router.watching.tap import Subscriber, TapFilter

from ..conftest import FLOW_KEY, AiohttpClient, Client
from ..support.bodies import body
from ..support.process import RouterProcess

TOKEN = "admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_subscriber_buffer_is_bounded_and_counts_what_it_drops() -> None:
    sub = Subscriber(TapFilter(), size=3)
    for i in range(10):
        sub.offer(b"%d\n" % i)
    sub.note_remote_drops(1, 5)  # another worker's share
    lines = sub.take().splitlines()
    assert lines == [b'{"type":"dropped","count":12}', b"0", b"1", b"2"]
    assert sub.take() == b""  # nothing new: no second `dropped` line


def test_filters_select_events_records_and_rejections() -> None:
    f = TapFilter.from_query({"event": "flow.*.submit", "kind": "flow", "sink": "log"})
    sub = Subscriber(f)
    assert sub.wants_event("flow.signin.submit") and not sub.wants_event("screen.signin")
    assert sub.wants_record("flow.signin.submit", "log", "flow")
    assert not sub.wants_record("flow.signin.submit", "log", "amplitude")
    assert not sub.wants_record("flow.signin.submit", "amplitude", "flow")
    assert TapFilter.from_query(f.query()) == f
    assert TapFilter.from_query({"rejected": "1"}).rejected
    with pytest.raises(ValueError, match="kind"):
        TapFilter.from_query({"kind": "nope"})


@pytest.fixture
async def tapped(
    aiohttp_client: AiohttpClient, settings: Settings, sink: MemorySink, rules: Any, registry: Any
) -> Client:
    from router.app import make_app

    settings = override(settings, admin={"token": TOKEN}, sidecar={"token": "sidecar-token"})
    return await aiohttp_client(make_app(settings, rules=rules, sinks=[sink], registry=registry))


async def read_until(resp: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got.append(json.loads(await resp.content.readline()))
    return got


async def test_no_token_no_tap(
    aiohttp_client: AiohttpClient, settings: Settings, sink: MemorySink, rules: Any
) -> None:
    from router.app import make_app

    client = await aiohttp_client(make_app(settings, rules=rules, sinks=[sink]))
    resp = await client.get("/__tap__", headers={"Authorization": "Bearer "})
    assert resp.status == 401
    assert (await resp.json())["validation"]["keys"] == ["$.headers.authorization"]


async def test_tap_shows_events_their_rule_and_each_record_per_sink(tapped: Client) -> None:
    assert (await tapped.get("/__tap__", headers={"Authorization": "Bearer x"})).status == 401
    resp = await tapped.get("/__tap__", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    hello = await read_until(resp, 1)
    assert hello == [{"type": "hello", "workers": [0]}]
    data = body([("flow.signin.submit", 1), ("no.such.event", 2)])
    assert (await tapped.post("/metrics", json=data)).status == 200
    got = await read_until(resp, 4)
    assert [(g["type"], g.get("event"), g.get("kind")) for g in got] == [
        ("event", "flow.signin.submit", None),
        ("record", "flow.signin.submit", "flow"),
        ("record", "flow.signin.submit", "amplitude"),
        ("event", "no.such.event", None),
    ]
    assert "fuzzy 'view-submit'" in got[0]["rule"]
    assert got[3]["rule"] is None
    assert got[2]["sink"] == "memory" and got[2]["record"]["event_type"] == "fxa_login - submit"
    resp.close()


async def test_filters_and_rejected_requests(tapped: Client) -> None:
    events = await tapped.get(
        "/__tap__", params={"event": "flow.*", "kind": "amplitude"}, headers=AUTH
    )
    refused = await tapped.get("/__tap__", params={"rejected": "1"}, headers=AUTH)
    await read_until(events, 1)
    await read_until(refused, 1)
    bad = body([("flow.signin.submit", -5)])
    assert (await tapped.post("/metrics", json=bad)).status == 400
    data = body([("screen.signin", 1), ("flow.signin.submit", 2)])
    assert (await tapped.post("/metrics", json=data)).status == 200
    (rejected,) = await read_until(refused, 1)
    assert rejected["status"] == 400 and rejected["path"] == "$.events[0].offset"
    assert rejected["endpoint"] == "/metrics" and rejected["reason"] == "schema"
    got = await read_until(events, 2)
    assert [(g["type"], g["event"]) for g in got] == [
        ("event", "flow.signin.submit"),
        ("record", "flow.signin.submit"),
    ]
    assert got[1]["kind"] == "amplitude"
    assert (await tapped.get("/__tap__", params={"kind": "x"}, headers=AUTH)).status == 400


async def test_a_refused_batch_shows_its_events_and_why(tapped: Client) -> None:
    resp = await tapped.get("/__tap__", headers=AUTH)
    await read_until(resp, 1)
    data = body([("flow.signin.submit", 1)], flowId="0" * 64)  # does not verify
    assert (await tapped.post("/metrics", json=data)).status == 200  # FxA drops it silently
    (line,) = await read_until(resp, 1)
    assert line["event"] == "flow.signin.submit" and line["dropped"] == "invalid_signature"
    assert tapped.app[STATS].get("metrics.batch.dropped", reason="invalid_signature") == 1
    resp.close()


async def test_a_slow_tap_drops_and_is_told_ingest_goes_on(
    tapped: Client, sink: MemorySink
) -> None:
    tap = tapped.app[TAP]
    tap.buffer_lines = 5
    resp = await tapped.get("/__tap__", headers=AUTH)
    await read_until(resp, 1)
    # One batch is traced in one loop turn: 30 lines at once into a buffer of 5.
    data = body([("flow.signin.submit", i) for i in range(10)])
    assert (await tapped.post("/metrics", json=data)).status == 200
    got = await read_until(resp, 6)
    assert got[0] == {"type": "dropped", "count": 25}
    await tapped.app[DISPATCHER].flush()
    assert len(sink.records) == 20  # every record reached the sink all the same
    resp.close()


async def test_nobody_tapping_costs_nothing_and_a_gone_client_unsubscribes(
    tapped: Client,
) -> None:
    tap = tapped.app[TAP]
    assert tap.subscribers == []
    resp = await tapped.get("/__tap__", headers=AUTH)
    await read_until(resp, 1)
    assert len(tap.subscribers) == 1
    resp.close()
    data = body([("flow.signin.submit", 1)])
    async with asyncio.timeout(10):
        while tap.subscribers:  # noticed at the next write or idle check
            assert (await tapped.post("/metrics", json=data)).status == 200
            await asyncio.sleep(0.05)


async def test_sidecar_and_metrics_flow_are_tapped(tapped: Client) -> None:
    resp = await tapped.get("/__tap__", headers=AUTH)
    await read_until(resp, 1)
    params = {"entrypoint": "x", "form_type": "email"}
    assert (await tapped.get("/metrics-flow", params=params)).status == 200
    got = await read_until(resp, 5)
    assert got[0]["endpoint"] == "/metrics-flow"
    # Each record under the event it was made from.
    assert [(g["type"], g["event"], g.get("record", {}).get("event_type")) for g in got] == [
        ("event", "flow.begin", None),
        ("record", "flow.begin", None),
        ("event", "screen.enter-email", None),
        ("record", "screen.enter-email", None),
        ("record", "screen.enter-email", "fxa_email_first - view"),
    ]
    assert got[3]["record"]["event"] == "flow.enter-email.view"
    assert "flow_id" in got[1]["record"] and "country" not in got[1]["record"]  # no nulls
    events = {"events": [{"event": "account.created", "uid": "0" * 32, "service": "sync"}]}
    headers = {"Authorization": "Bearer sidecar-token"}
    assert (await tapped.post("/sidecar/events", json=events, headers=headers)).status == 200
    while True:
        (line,) = await read_until(resp, 1)
        if line["type"] == "event" and line["endpoint"] == "/sidecar/events":
            assert line["event"] == "account.created" and line["rule"]
            break
    # Every kind is shown, the auth server's activityEvent record too.
    kinds = {g["kind"] for g in await read_until(resp, 2) if g["type"] == "record"}
    assert "activity" in kinds, kinds
    resp.close()


# -- the command, against real router processes -----------------------------------------------


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "router.toml"
    config.write_text(
        f'[server]\nworker_dir = "{tmp_path / "w"}"\nshutdown_timeout_seconds = 5\n'
        f'[flow]\nkey = "{FLOW_KEY}"\n[admin]\ntoken = "{TOKEN}"\n'
        f'[sinks.log]\npath = "{tmp_path / "events.log"}"\n'
    )
    return config


async def spawn_tap(config: Path, url: str, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_ROUTER_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "router", "tap", "--config", str(config), "--url", url, *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def start_tap(config: Path, url: str, *args: str) -> asyncio.subprocess.Process:
    """`metrics-router tap`, once it says every worker is subscribed."""
    proc = await spawn_tap(config, url, *args)
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        line = (await proc.stderr.readline()).decode()
    assert line.startswith(f"tapping {url}"), line
    return proc


async def post(url: str, data: dict[str, Any]) -> int:
    # A new connection each time, so the kernel's SO_REUSEPORT hash spreads them.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.post(f"{url}/metrics", json=data) as resp,
    ):
        return resp.status


async def test_one_tap_sees_every_worker(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with RouterProcess(config, args=["--workers", "2"]) as router:
        await router.wait_for_line("worker 0")
        await router.wait_for_line("worker 1")
        tap = await start_tap(config, router.url, "--json", "--kind", "flow")
        assert tap.stdout is not None
        try:
            seen: set[int] = set()
            async with asyncio.timeout(60):
                for _ in range(200):  # bounded: the kernel spreads connections over both
                    assert await post(router.url, body([("flow.signin.submit", 1)])) == 200
                    for _ in range(2):  # the event line, then its one flow record
                        line = json.loads(await tap.stdout.readline())
                        assert line["event"] == "flow.signin.submit"
                        seen.add(line["worker"])
                    assert line["type"] == "record" and line["kind"] == "flow"
                    if seen == {0, 1}:
                        break
            assert seen == {0, 1}
        finally:
            tap.kill()
            await tap.wait()


async def test_the_tap_command_prints_one_line_each(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with RouterProcess(config) as router:
        tap = await start_tap(config, router.url, "--event", "flow.signin.*")
        refused = await start_tap(config, router.url, "--rejected")
        assert tap.stdout is not None and refused.stdout is not None
        try:
            data = body([("screen.signin", 1), ("flow.signin.submit", 2)])
            assert await post(router.url, data) == 200
            assert await post(router.url, body([("x", -1)])) == 400
            async with asyncio.timeout(20):
                text = [(await tap.stdout.readline()).decode() for _ in range(3)]
                rejected = (await refused.stdout.readline()).decode()
            assert " w0 /metrics " in text[0]
            assert "event flow.signin.submit" in text[0] and "fuzzy 'view-submit'" in text[0]
            assert "→ log" in text[1] and "flow.signin.submit" in text[1]
            assert "→ log" in text[2] and "fxa_login - submit" in text[2]
            assert "rejected 400 schema at $.events[0].offset" in rejected
        finally:
            for proc in (tap, refused):
                proc.kill()
                await proc.wait()


async def test_no_token_in_the_config_no_tap(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text(f'[flow]\nkey = "{FLOW_KEY}"\n')
    proc = await spawn_tap(config, "http://127.0.0.1:9")
    _, err = await proc.communicate()
    assert proc.returncode == 2 and b"no token" in err


async def test_sigterm_ends_the_tap_rather_than_wait_for_it(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    # A long drain deadline: a stream still open at SIGTERM would hold the exit up to it.
    config.write_text(
        config.read_text().replace("shutdown_timeout_seconds = 5", "shutdown_timeout_seconds = 120")
    )
    async with RouterProcess(config) as router:
        tap = await start_tap(config, router.url)
        assert tap.stderr is not None
        router.signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await router.wait() == 0
            assert b"closed the stream" in await tap.stderr.readline()
            assert await tap.wait() == 0


async def test_strict_mode_batches_are_tapped_too(
    aiohttp_client: AiohttpClient, settings: Settings, sink: MemorySink, rules: Any
) -> None:
    from router.app import make_app

    # Strict: the handler processes the batch itself, not Deferred.
    settings = override(settings, admin={"token": TOKEN}, spool={"strict": True})
    client = await aiohttp_client(make_app(settings, rules=rules, sinks=[sink]))
    resp = await client.get("/__tap__", params={"kind": "flow"}, headers=AUTH)
    await read_until(resp, 1)
    assert (await client.post("/metrics", json=body([("flow.signin.submit", 1)]))).status == 200
    got = await read_until(resp, 2)
    assert [(g["type"], g["event"]) for g in got] == [
        ("event", "flow.signin.submit"),
        ("record", "flow.signin.submit"),
    ]
    resp.close()
