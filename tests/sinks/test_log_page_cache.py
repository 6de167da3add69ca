"""The log sink keeps a few windows of its file in the page cache, not the whole file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from router.config import load_settings
from router.dispatch.deadletter import DeadLetters
from router.records import FlowEvent
from router.sinks import build_sinks
from router.sinks.log import LogSink
from router.stats import Stats

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


async def write_mib(sink: LogSink, path: Path, mib: int, fsync: bool = False) -> None:
    """Send batches of flow records until the file has grown by `mib` MiB.

    `fsync`: every page written back after each batch, so each later DONTNEED can drop it.
    """
    goal = path.stat().st_size + mib * MIB
    batch = [msgspec.structs.replace(FLOW, time=i) for i in range(1000)]
    while path.stat().st_size < goal:
        await sink.send(batch)
        if fsync:
            assert sink._file is not None
            os.fsync(sink._file.fileno())


async def test_pages_behind_the_end_leave_the_page_cache(tmp_path: Path) -> None:
    kept_path = tmp_path / "kept.jsonl"
    sink = LogSink("log", str(kept_path), drop_cache_mb=0)
    await sink.start()
    await write_mib(sink, kept_path, 4, fsync=True)
    await sink.aclose()
    size, kept = kept_path.stat().st_size, resident(kept_path)
    if kept < size - MIB:
        pytest.skip(f"this filesystem does not keep written pages cached ({kept} of {size})")

    path = tmp_path / "log.jsonl"
    sink = LogSink("log", str(path), drop_cache_mb=1)
    await sink.start()
    await write_mib(sink, path, 16, fsync=True)
    last = sink._drop_ends[-1]
    await sink.aclose()
    size, cached = path.stat().st_size, resident(path)
    assert last >= size - 3 * MIB, (last, size)  # the calls kept up with the writes
    # Everything before the last range's end was clean when advised, so dropped, but for
    # the folio that straddles that end (the page cache drops whole folios: up to 2 MiB,
    # 80 KiB seen here); the newest window stays cached for a shipper reading it.
    assert cached <= size - last + 2 * MIB, (cached, size, last)
    assert cached < size / 3
    assert cached >= MIB - 4096


class Tell:
    """A file that only says how big it is, for the ranges' arithmetic."""

    def __init__(self) -> None:
        self.size = 0

    def tell(self) -> int:
        return self.size

    def fileno(self) -> int:
        return -1


@pytest.mark.parametrize("batch_windows", [0.3, 0.99, 1.0, 2.5, 6.0])
def test_every_page_is_in_three_ranges_in_a_row(
    monkeypatch: pytest.MonkeyPatch, batch_windows: float
) -> None:
    # DONTNEED drops clean pages only: a page still dirty at its first range must be in
    # later ones, whatever the batch size against the window.
    ranges: list[tuple[int, int]] = []

    def advise(fd: int, start: int, length: int, advice: int) -> None:
        ranges.append((start, start + length))

    monkeypatch.setattr(os, "posix_fadvise", advise)
    sink = LogSink("log", "unused", drop_cache_mb=1)
    file = Tell()
    batch = int(batch_windows * MIB)
    for _ in range(60):
        file.size += batch
        sink._written(file, batch)  # type: ignore[arg-type]
    assert len(ranges) >= 6
    assert all(end <= file.size - MIB for _, end in ranges)  # the newest window is left
    covered = ranges[-1][1]
    for page in range(0, ranges[-3][1], 4096):
        assert sum(start <= page < end for start, end in ranges) >= 3, page
    # No range reaches back further than three calls: the cost of a call stays bounded.
    assert all(ranges[i][0] >= ranges[i - 3][1] for i in range(3, len(ranges)))
    assert covered > file.size - MIB - batch - MIB


async def test_files_the_kernel_does_not_cache_turn_dropping_off(tmp_path: Path) -> None:
    # A pipe (ESPIPE): every line still arrives, and the sink stops asking.
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    sink = LogSink("log", f"/dev/fd/{write_fd}", drop_cache_mb=1)
    await sink.start()
    line = LogSink("x").encode([FLOW])
    received = bytearray()
    try:
        for _ in range(2):  # ~49.5 KB a send: the 1 MiB window is crossed after ~22 sends
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


def test_drop_cache_setting(tmp_path: Path) -> None:
    settings = load_settings(environ={"METRICS_ROUTER_SINKS_LOG_DROP_CACHE_MB": "0"})
    assert settings.sinks.log is not None and settings.sinks.log.drop_cache_mb == 0
    assert load_settings(environ={}).sinks.log.drop_cache_mb == 16  # type: ignore[union-attr]
    # Both file sinks take it from their section.
    config = tmp_path / "router.toml"
    config.write_text(
        '[sinks.log]\npath = "a.jsonl"\ndrop_cache_mb = 2\n'
        '[sinks.client_metrics]\npath = "b.jsonl"\ndrop_cache_mb = 3\n'
    )
    built = build_sinks(load_settings(config, environ={}), DeadLetters(tmp_path / "dl", Stats()))
    windows = {sink.name: sink.drop_window for sink, _ in built if isinstance(sink, LogSink)}
    assert windows == {"log": 2 * MIB, "client_metrics": 3 * MIB}


async def test_a_reopened_file_starts_its_ranges_again(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    sink = LogSink("log", str(path), drop_cache_mb=1)
    await sink.start()
    await write_mib(sink, path, 3)
    assert sink._drop_ends
    path.rename(tmp_path / "log.jsonl.1")  # logrotate
    await sink.reopen()
    assert (sink._drop_ends, sink._since_drop) == ([], 0)
    await sink.aclose()
