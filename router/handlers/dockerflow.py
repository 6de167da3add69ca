"""Dockerflow: `/__version__`, `/__heartbeat__`, `/__lbheartbeat__`."""

from __future__ import annotations

import asyncio
import subprocess
from functools import cache
from pathlib import Path

import msgspec
from aiohttp import web

from .. import __version__
from ..state import DISPATCHER, SETTINGS, STASH, STATS, STATS_VIEW
from .common import json_response

ROOT = Path(__file__).resolve().parents[2]
# A checkout's own, then Dockerflow's place for it (the image writes /app/version.json).
VERSION_FILES = (ROOT / "version.json", Path("/app/version.json"))


@cache
def version_info() -> dict[str, str]:
    """version.json when a build wrote one, else the package version and git commit."""
    for path in VERSION_FILES:
        if path.is_file():
            data = msgspec.json.decode(path.read_bytes())
            if isinstance(data, dict):
                return {k: str(v) for k, v in data.items()}
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"version": __version__, "commit": commit, "source": "metrics-router"}


async def get_version(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(version_info))


async def get_lbheartbeat(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def get_heartbeat(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for runner in request.app[DISPATCHER].runners:
        try:
            async with asyncio.timeout(2):
                ok = await runner.sink.healthy()
        except (TimeoutError, OSError):
            ok = False
        checks[f"sink.{runner.sink.name}"] = "ok" if ok else "error"
    disk = request.app[DISPATCHER].disk
    if disk is not None:
        checks["disk.spool"] = "ok" if await disk.healthy() else "error"
    store = request.app[STASH].store
    if store.name != "memory":  # the in-process store cannot fail
        checks[f"context.{store.name}"] = "ok" if await store.healthy() else "error"
    healthy = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )


async def get_stats(request: web.Request) -> web.Response:
    """Every counter (exact, never sampled) and gauge in the Prometheus text format.

    With several workers, the counters are the sums over all of them.
    """
    app = request.app
    view = app.get(STATS_VIEW)
    stats = app[STATS] if view is None else await view()
    text = stats.prometheus(app[SETTINGS].stats.prefix or "metrics_router")
    return web.Response(
        body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
