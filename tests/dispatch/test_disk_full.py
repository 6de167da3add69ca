"""Disk full: spool, dead-letter store and log file on a small tmpfs this test mounts.

ENOSPC must turn into 503 + Retry-After (nothing acknowledged is lost), the heartbeat
fails below `[spool] min_free_disk_mb`, and everything recovers once space returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from router.app import make_app
from router.config import Settings, override
from router.dispatch import SpoolBuffer
from router.errors import SpoolError
from router.ruletable import RuleTable
from router.sinks.base import Sink
from router.sinks.log import LogSink
from router.state import DEADLETTERS, DISPATCHER
from router.stats import Stats

from ..conftest import AiohttpClient
from ..support.bodies import body
from ..support.spool_sinks import GatedSink


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the file system: the next write hits ENOSPC."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * (64 << 10)
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 512)
    return filler


Start = Callable[..., Awaitable[tuple[web.Application, TestClient[web.Request, web.Application]]]]


@pytest.fixture
def start(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    rules: RuleTable,
    stats: Stats,
    small_disk: Path,
) -> Start:
    """The router with its spool (and dead-letter store) on the small disk, and one sink."""

    async def go(
        sink: Sink, strict: bool = False
    ) -> tuple[web.Application, TestClient[web.Request, web.Application]]:
        spool = {
            "path": str(small_disk / "spool"),
            "commit_interval_ms": 20,
            "retry_after_seconds": 3,
            "min_free_disk_mb": 1,
            "strict": strict,
        }
        app = make_app(override(settings, spool=spool), rules=rules, sinks=[sink], stats=stats)
        return app, await aiohttp_client(app)

    return go


async def test_full_spool_answers_503_and_recovers(
    start: Start, stats: Stats, small_disk: Path
) -> None:
    sink = GatedSink(up=False)
    app, client = await start(sink)
    buffer = app[DISPATCHER].runners[0].buffer
    assert isinstance(buffer, SpoolBuffer)
    assert (await client.get("/__heartbeat__")).status == 200

    filler = fill(small_disk)
    heartbeat = await client.get("/__heartbeat__")
    assert heartbeat.status == 503
    assert (await heartbeat.json())["checks"]["disk.spool"] == "error"
    # Accepted before the disk was known to be full: kept in memory, never lost.
    accepted = 0
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 1)]))
    assert resp.status == 200
    accepted += 1
    with pytest.raises(SpoolError):
        async with asyncio.timeout(10):
            await buffer.checkpoint()
    assert buffer.refusal == "disk_full"
    refused = await client.post("/metrics", json=body([("flow.signin.engage", 2)]))
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "3"
    assert (await refused.json())["message"] == "disk full: try again later"
    assert stats.get("request.rejected", endpoint="/metrics", reason="disk_full", status="503")

    filler.unlink()  # space returns: the next commit round succeeds by itself
    async with asyncio.timeout(10):
        await buffer.checkpoint()
    assert buffer.refusal is None and buffer.spool.rows == 1
    assert (await client.get("/__heartbeat__")).status == 200
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 3)]))
    assert resp.status == 200
    accepted += 1
    sink.up.set()
    async with asyncio.timeout(10):
        await app[DISPATCHER].flush()
    assert len(sink.flow) == accepted


async def test_strict_request_on_a_full_disk_is_refused(
    start: Start, stats: Stats, small_disk: Path
) -> None:
    sink = GatedSink(up=False)
    app, client = await start(sink, strict=True)
    filler = fill(small_disk)
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 1)]))
    # Strict mode promises "on disk" with the 200: here it cannot, so no 200.
    assert resp.status == 503 and resp.headers["Retry-After"] == "3"
    assert (await resp.json())["message"] == "disk full: try again later"
    filler.unlink()
    buffer = app[DISPATCHER].runners[0].buffer
    assert isinstance(buffer, SpoolBuffer)
    async with asyncio.timeout(10):
        await buffer.checkpoint()  # the next commit round, which now succeeds
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 2)]))
    assert resp.status == 200
    sink.up.set()
    async with asyncio.timeout(10):
        await app[DISPATCHER].flush()
    # The refused request's records were kept too (a retry by the client is a duplicate).
    assert len(sink.flow) == 2


async def test_full_dead_letter_store_keeps_the_batch(
    start: Start, stats: Stats, small_disk: Path
) -> None:
    sink = GatedSink()
    sink.fail_next = 1_000_000  # the destination refuses everything: all of it dead-letters
    app, client = await start(sink)
    dispatcher = app[DISPATCHER]
    runner = dispatcher.runners[0]
    runner.retry_seconds = 0.01
    await app[DEADLETTERS].open()
    filler = fill(small_disk)
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 1)]))
    assert resp.status == 200
    # The batch fails, its dead letters cannot be written: ingest refuses until they can.
    async with asyncio.timeout(10):
        await runner.disk_full.wait()
    refused = await client.post("/metrics", json=body([("flow.signin.engage", 2)]))
    assert refused.status == 503 and refused.headers["Retry-After"] == "3"
    filler.unlink()
    buffer = runner.buffer
    assert isinstance(buffer, SpoolBuffer)
    async with asyncio.timeout(10):
        await dispatcher.flush()
        # The spool's write-behind failed while the disk was full too; its refusal clears
        # at the next commit round (every 20 ms here): run one now, not race it.
        await buffer.checkpoint()
    assert runner.refusal is None
    letters = await app[DEADLETTERS].list()
    assert {letter.reason for letter in letters} == {"sink_error"}
    assert len(letters) == 2  # the accepted request's flow and amplitude records
    assert sink.records == []


async def test_full_log_file_answers_503_and_loses_no_line(
    start: Start, stats: Stats, small_disk: Path
) -> None:
    log_path = small_disk / "events.log"
    sink = LogSink("log", str(log_path))
    app, client = await start(sink)
    dispatcher = app[DISPATCHER]
    runner = dispatcher.runners[0]
    runner.retry_seconds = 0.01
    filler = fill(small_disk)
    big = [("flow.signin.engage", i) for i in range(200)]  # more than the file's buffer
    resp = await client.post("/metrics", json=body(big))
    assert resp.status == 200
    async with asyncio.timeout(10):
        await runner.disk_full.wait()
    refused = await client.post("/metrics", json=body([("flow.signin.engage", 1)]))
    assert refused.status == 503
    filler.unlink()
    async with asyncio.timeout(10):
        await dispatcher.flush()
    assert runner.refusal is None
    lines = [json.loads(line) for line in log_path.read_bytes().splitlines()]  # all whole
    flow = [line["Fields"]["flow_time"] for line in lines if line["Type"] == "flowEvent"]
    assert len(set(flow)) == len(big)
    assert stats.total("sink.dropped") == 0 and stats.total("sink.failed") >= 1
