"""The log sink keeps a few windows of its file in the page cache, not the whole file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from router.config import load_settings
from router.records import FlowEvent
from router.sinks.log import LogSink

MIB = 1 << 20
FLOW = FlowEvent(
    event="flow.signin.view", flow_id="f" * 64, flow_time=0, time=1, userAgent="U" * 700
)

pytestmark = pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")


def resident(path: Path) -> int:
    """Bytes of `path` in the page cache (util-linux fincore, i.e. mincore(2))."""
    out = subprocess.run(
        ["fincore", "--bytes", "--raw", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[0])


async def write_mib(sink: LogSink, path: Path, mib: int) -> None:
    """Send batches of flow records until the file has grown by `mib` MiB."""
    goal = path.stat().st_size + mib * MIB
    batch = [msgspec.structs.replace(FLOW, time=i) for i in range(1000)]
    while path.stat().st_size < goal:
        await sink.send(batch)


async def cached_after(tmp_path: Path, drop_cache_mb: int) -> tuple[int, int]:
    """Write 6 MiB, make every page clean (fsync), write 1 MiB more: (size, bytes cached)."""
    path = tmp_path / f"log-{drop_cache_mb}.jsonl"
    sink = LogSink("log", str(path), drop_cache_mb=drop_cache_mb)
    await sink.start()
    try:
        await write_mib(sink, path, 6)
        assert sink._file is not None
        # Written back: the next call that covers these pages can drop them, with no wait.
        os.fsync(sink._file.fileno())
        await write_mib(sink, path, 1)
    finally:
        await sink.aclose()
    return path.stat().st_size, resident(path)


async def test_pages_behind_the_end_leave_the_page_cache(tmp_path: Path) -> None:
    size, kept = await cached_after(tmp_path, 0)
    if kept < size - MIB:
        pytest.skip(f"this filesystem does not keep written pages cached ({kept} of {size})")
    size, cached = await cached_after(tmp_path, 1)
    # The window call after the fsync drops the 1-4 MiB behind the end: at least 3 MiB of
    # clean pages, less a page at each edge of the range.
    assert cached <= size - 3 * MIB + 2 * 4096, (cached, size)
    # The newest window stays cached for a shipper reading the file.
    assert cached >= MIB - 4096


async def test_files_the_kernel_does_not_cache_turn_dropping_off(tmp_path: Path) -> None:
    # A pipe (ESPIPE): every line still arrives, and the sink stops asking.
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    sink = LogSink("log", f"/dev/fd/{write_fd}", drop_cache_mb=1)
    await sink.start()
    line = LogSink("x").encode([FLOW])
    received = bytearray()
    try:
        for _ in range(2):  # 2 x 40 KiB per round: the window is crossed after ~26 sends
            for _ in range(40):
                await sink.send([FLOW] * 50)
                received += os.read(read_fd, 1 << 20)
    finally:
        await sink.aclose()
        os.close(read_fd)
        os.close(write_fd)
    assert sink.drop_window == 0
    assert received.count(b"\n") == 4000
    assert len(received) == 4000 * len(line)


def test_drop_cache_setting() -> None:
    settings = load_settings(environ={"METRICS_ROUTER_SINKS_LOG_DROP_CACHE_MB": "0"})
    assert settings.sinks.log is not None and settings.sinks.log.drop_cache_mb == 0
    assert load_settings(environ={}).sinks.log.drop_cache_mb == 16  # type: ignore[union-attr]
