"""Log rotation without copytruncate: rename the file, signal, and no line is lost or split.

The router runs as a real process (one, or gunicorn with two workers) under a steady
load of POST /metrics; the test renames the log file as logrotate does and sends SIGHUP,
later SIGUSR1 (nginx's reopen signal). Every line of every file must be a whole mozlog
line, and the files together must hold each record exactly once.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from ..conftest import FLOW_KEY
from ..support.bodies import body
from ..support.process import RouterProcess
from ..test_workers import wait_count

CLIENTS = 4
# Requests after the last reopen was confirmed, so the fresh file surely gets lines.
AFTER = 120


def write_config(tmp_path: Path, workers: int) -> tuple[Path, Path]:
    log_path = tmp_path / "events.log"
    config = tmp_path / "router.toml"
    config.write_text(
        f'[server]\nworkers = {workers}\nworker_dir = "{tmp_path / "workers"}"\n'
        f'[flow]\nkey = "{FLOW_KEY}"\n'
        f'[sinks.log]\npath = "{log_path}"\nflush_interval_ms = 5\n'
    )
    return config, log_path


def record_key(line: dict[str, object]) -> tuple[str, str, str]:
    """What makes a record unique here: its type, its event and its request's flow id."""
    fields = line["Fields"]
    assert isinstance(fields, dict)
    if line["Type"] == "flowEvent":
        return "flow", str(fields["event"]), str(fields["flow_id"])
    user = json.loads(fields["user_properties"])
    return "amplitude", str(fields["event_type"]), str(user["flow_id"])


class Load:
    """CLIENTS loops posting one flow per request until told to stop (and `minimum` sent)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: list[str] = []  # flow ids answered 200
        self.stop_after: int | None = None
        self.progress = asyncio.Condition()

    async def client(self, http: aiohttp.ClientSession) -> None:
        while self.stop_after is None or len(self.sent) < self.stop_after:
            data = body([("flow.signin.engage", 1), ("flow.signin.submit", 2)])
            async with http.post(f"{self.url}/metrics", json=data) as resp:
                assert resp.status == 200
            async with self.progress:
                self.sent.append(data["flowId"])
                self.progress.notify_all()

    async def reach(self, count: int) -> None:
        async with asyncio.timeout(60), self.progress:
            await self.progress.wait_for(lambda: len(self.sent) >= count)


async def rotate_under_load(router: RouterProcess, log_path: Path, workers: int) -> list[str]:
    load = Load(router.url)
    connector = aiohttp.TCPConnector(force_close=workers > 1)
    async with aiohttp.ClientSession(connector=connector) as http:
        clients = [asyncio.create_task(load.client(http)) for _ in range(CLIENTS)]
        try:
            for number, sig in enumerate((signal.SIGHUP, signal.SIGUSR1), 1):
                await load.reach(150 * number)
                log_path.rename(log_path.with_name(f"events.log.{number}"))
                router.signal(sig)
                await wait_count(router, f"reopened {log_path}", workers * number)
            load.stop_after = len(load.sent) + AFTER
            await asyncio.gather(*clients)
        finally:
            for task in clients:
                task.cancel()
    router.signal(signal.SIGTERM)
    assert await router.wait() == 0, "".join(router.stderr_lines)
    return load.sent


def check_files(log_path: Path, sent: list[str]) -> None:
    files = [log_path.with_name(n) for n in ("events.log.1", "events.log.2", "events.log")]
    keys: Counter[tuple[str, str, str]] = Counter()
    for path in files:
        text = path.read_text()
        assert text.endswith("}\n"), f"{path.name} does not end with a whole line"
        lines = text.splitlines()
        assert lines, f"nothing was written to {path.name}"
        for raw in lines:
            line = json.loads(raw)  # a split or interleaved line does not parse
            keys[record_key(line)] += 1
    expected = Counter(
        (kind, name, flow_id)
        for flow_id in sent
        for kind, name in (
            ("flow", "flow.signin.engage"),
            ("flow", "flow.signin.submit"),
            ("amplitude", "fxa_login - engage"),
            ("amplitude", "fxa_login - submit"),
        )
    )
    assert keys == expected


@pytest.mark.slow
async def test_log_file_reopens_on_hup_and_usr1_under_load(tmp_path: Path) -> None:
    config, log_path = write_config(tmp_path, workers=1)
    async with RouterProcess(config) as router:
        sent = await rotate_under_load(router, log_path, workers=1)
    check_files(log_path, sent)


@pytest.mark.slow
async def test_every_worker_reopens_its_log_file(tmp_path: Path) -> None:
    config, log_path = write_config(tmp_path, workers=2)
    async with RouterProcess(config) as router:
        await wait_count(router, "ready in", 2)
        sent = await rotate_under_load(router, log_path, workers=2)
    check_files(log_path, sent)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len({line["Pid"] for line in lines}) == 2  # both workers wrote to the new file
