from __future__ import annotations

from ..conftest import Client


async def test_version(client: Client) -> None:
    resp = await client.get("/__version__")
    assert resp.status == 200
    data = await resp.json()
    assert set(data) >= {"version", "commit", "source"}


async def test_lbheartbeat(client: Client) -> None:
    assert (await client.get("/__lbheartbeat__")).status == 200


async def test_heartbeat(client: Client) -> None:
    resp = await client.get("/__heartbeat__")
    assert resp.status == 200
    assert (await resp.json())["checks"] == {"sink.memory": "ok"}


async def test_unknown_path_is_404_json(client: Client) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["statusCode"] == 404


async def test_wrong_method_is_405(client: Client) -> None:
    resp = await client.put("/metrics")
    assert resp.status == 405
