"""The metrics-context stash against real memcached processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router.enrich.context import MemcachedStore, StashService, stash_key
from router.events import MetricsContext
from router.sinks.memory import MemorySink
from router.stats import Stats

from ..support.memcached import Memcached
from ..support.sidecar import AUTH, UID, MakeClient, context, event, send

pytestmark = pytest.mark.usefixtures("blockbuster")


@pytest.fixture
async def memcached() -> AsyncIterator[Memcached]:
    async with Memcached() as server:
        yield server


def stash_body(token: str, **ctx: Any) -> dict[str, Any]:
    return {"uid": UID, "token_id": token, "metrics_context": ctx or context()}


async def test_stash_add_only_and_propagate(make_client: MakeClient, memcached: Memcached) -> None:
    client = await make_client(memcached=[memcached.address])
    first, second = context(), context()
    resp = await client.post("/sidecar/context", json=stash_body("t1", **first), headers=AUTH)
    assert await resp.json() == {"stored": True}
    resp = await client.post("/sidecar/context", json=stash_body("t1", **second), headers=AUTH)
    assert await resp.json() == {"stored": False}  # never overwritten
    raw = await memcached.get(stash_key(UID, "t1"))
    assert raw is not None and first["flowId"].encode() in raw
    move = {"uid": UID, "from_token_id": "t1", "to_token_id": "t2"}
    resp = await client.post("/sidecar/context/propagate", json=move, headers=AUTH)
    assert await resp.json() == {"propagated": True}
    assert await memcached.get(stash_key(UID, "t2")) == raw
    gone = {"uid": UID, "from_token_id": "nope", "to_token_id": "t3"}
    resp = await client.post("/sidecar/context/propagate", json=gone, headers=AUTH)
    assert await resp.json() == {"propagated": False}


async def test_stash_expires_after_ttl(memcached: Memcached) -> None:
    store = MemcachedStore([memcached.address], timeout=1.0)
    stash = StashService(store, ttl=1, stats=Stats())
    try:
        start = await memcached.clock()
        assert await stash.stash(UID, "t", MetricsContext(**context()))
        assert await stash.read(UID, "t") is not None
        # Expiry is decided by memcached's 1 s clock: wait for it, not for ours.
        await memcached.wait_clock(start + 2)
        assert await stash.read(UID, "t") is None
    finally:
        await store.aclose()


async def test_keys_are_sharded_over_two_servers() -> None:
    async with Memcached() as one, Memcached() as two:
        store = MemcachedStore([one.address, two.address], timeout=1.0)
        stash = StashService(store, ttl=60, stats=Stats())
        try:
            tokens = [f"token{i}" for i in range(40)]
            for token in tokens:
                assert await stash.stash(UID, token, MetricsContext(**context()))
            where: dict[str, int] = {one.address: 0, two.address: 0}
            for token in tokens:
                key = stash_key(UID, token)
                found = [s for s in (one, two) if await s.get(key) is not None]
                assert [s.address for s in found] == [store.server_for(stash_key(UID, token))]
                where[found[0].address] += 1
            assert all(count > 0 for count in where.values()), where
        finally:
            await store.aclose()


async def test_memcached_killed_mid_test(
    make_client: MakeClient, memcached: Memcached, sink: MemorySink, stats: Stats
) -> None:
    client = await make_client(memcached=[memcached.address], timeout_ms=200)
    resp = await client.post("/sidecar/context", json=stash_body("t1"), headers=AUTH)
    assert await resp.json() == {"stored": True}
    assert (await client.get("/__heartbeat__")).status == 200

    await memcached.kill()
    # The stashed context is out of reach: the event goes on as a non-flow event.
    await send(client, event("account.created", token_id="t1"))
    assert [e.event_type for e in sink.amplitude] == ["fxa_reg - created"]
    assert sink.flow == []
    assert stats.get("server_events.context.invalid", reason="missing_context") == 1
    resp = await client.post("/sidecar/context", json=stash_body("t2"), headers=AUTH)
    assert resp.status == 200 and await resp.json() == {"stored": False}
    await send(client, event("account.login", token_id="t1"))  # clearing fails quietly too
    for op in ("read", "stash", "clear"):
        assert (
            stats.get("context.store.error", op=op, reason="unavailable", store="memcached") >= 1
        ), stats.counters
    resp = await client.get("/__heartbeat__")
    assert resp.status == 503
    assert (await resp.json())["checks"]["context.memcached"] == "error"


async def test_slow_memcached_times_out(make_client: MakeClient, stats: Stats) -> None:
    """A server that accepts and never answers: requests still succeed, fast."""
    connected = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await make_client(memcached=[f"127.0.0.1:{port}"], timeout_ms=50)
        async with asyncio.timeout(2):
            resp = await client.post("/sidecar/context", json=stash_body("t1"), headers=AUTH)
            assert await resp.json() == {"stored": False}
            await send(client, event("account.created", token_id="t1"))
        assert connected.is_set()
        assert stats.get("context.store.error", op="stash", reason="timeout", store="memcached")
        assert stats.get("context.store.error", op="read", reason="timeout", store="memcached")
        assert (await client.get("/__heartbeat__")).status == 503
        await client.close()
    finally:
        server.close()
        await server.wait_closed()
