from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from router import healthcheck
from router.handlers import dockerflow
from router.state import STATS

from ..conftest import Client
from ..support.process import free_port


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


async def test_unknown_path_is_404_json_and_counted_without_its_path(client: Client) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    assert await resp.json() == {
        "error": "Not Found",
        "message": "404: Not Found",
        "statusCode": 404,
    }
    stats = client.app[STATS]
    assert stats.get("requests", endpoint="other", status="404") == 1
    assert stats.get("request.rejected", endpoint="other", reason="not found", status="404") == 1


@pytest.mark.parametrize(
    "method, path, allow",
    [("PUT", "/metrics", "POST"), ("POST", "/metrics-flow", "GET,HEAD,OPTIONS")],
)
async def test_wrong_method_is_405_json_with_allow(
    client: Client, method: str, path: str, allow: str
) -> None:
    resp = await client.request(method, path)
    assert resp.status == 405
    assert resp.headers["Allow"] == allow
    assert (await resp.json())["statusCode"] == 405
    assert client.app[STATS].get("requests", endpoint="other", status="405") == 1


def test_version_json_from_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package finds the version.json the image wrote (Dockerfile)."""
    written = tmp_path / "version.json"
    written.write_text('{"source": "s", "version": "9.9", "commit": "abc", "build": "b"}')
    monkeypatch.setattr(dockerflow, "VERSION_FILES", (tmp_path / "absent.json", written))
    dockerflow.version_info.cache_clear()
    try:
        assert dockerflow.version_info() == {
            "source": "s",
            "version": "9.9",
            "commit": "abc",
            "build": "b",
        }
    finally:
        dockerflow.version_info.cache_clear()


async def test_healthcheck_probe(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m router.healthcheck`: 0 when a port answers 200, 1 otherwise."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/__lbheartbeat__", ok)
    server = await aiohttp_server(app)
    port = str(server.port)
    found = await asyncio.to_thread(healthcheck.main, ["/__lbheartbeat__", port])
    missing = await asyncio.to_thread(healthcheck.main, ["/nothing-here", port])
    assert (found, missing) == (0, 1)
    # No port given: the router's port, then the forwarder's (as in a forwarder container).
    monkeypatch.setenv("METRICS_ROUTER_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("METRICS_ROUTER_FORWARD_PORT", port)
    assert await asyncio.to_thread(healthcheck.main, []) == 0
    monkeypatch.setenv("METRICS_ROUTER_FORWARD_PORT", str(free_port()))
    assert await asyncio.to_thread(healthcheck.main, []) == 1
