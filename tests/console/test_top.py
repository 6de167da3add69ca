"""`metrics-router top`: a real terminal (tmux) shows a loaded router's numbers moving."""

from __future__ import annotations

import asyncio
import io
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from rich.console import Console

from router.console.top import Reading, parse, render

from ..conftest import FLOW_KEY
from ..support.bodies import body
from ..support.process import RouterProcess

FORWARDER_STATS = """\
# TYPE metrics_router_forward_delivered_total counter
metrics_router_forward_delivered_total{destination="amplitude"} 120
# TYPE metrics_router_sink_sent_total counter
metrics_router_sink_sent_total{sink="amplitude"} 118
# TYPE metrics_router_sink_queue_depth gauge
metrics_router_sink_queue_depth{sink="amplitude",worker="0"} 3
metrics_router_sink_queue_depth{sink="amplitude",worker="1"} 4
"""


def screen(now: Reading, before: Reading | None) -> str:
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(render("http://router", now, before))
    return console.export_text()


def test_top_shows_whatever_metric_set_it_finds() -> None:
    # A forwarder's /__stats__ (no request or event counters, metrics top has no panel for).
    before = Reading(100.0, parse(FORWARDER_STATS, "metrics_router"))
    later = FORWARDER_STATS.replace("} 120", "} 220").replace("} 118", "} 218")
    now = Reading(102.0, parse(later, "metrics_router"))
    text = screen(now, before)
    assert "requests" not in text and "events" not in text
    sink = next(line for line in text.splitlines() if line.startswith("amplitude"))
    assert sink.split()[:2] == ["amplitude", "50"]  # 100 sent in 2 s
    assert sink.split()[6] == "7"  # queue depth summed over workers
    other = next(line for line in text.splitlines() if "forward_delivered" in line)
    assert other.split()[1:] == ["50", "220"]
    assert "unreachable" in screen(Reading(1.0, {}, error="connection refused"), None)


def tmux(*args: str) -> list[str]:
    # A tmux server of this test's own: kill-server ends it and nobody else's.
    return ["tmux", "-L", f"metrics-router-test-{os.getpid()}", *args]


async def run(*cmd: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (cmd, err)
    return out.decode()


def metrics_total(pane: str) -> int | None:
    """The `total` column of the `/metrics` row of the requests panel."""
    for line in pane.splitlines():
        cells = line.split()
        if cells and cells[0] == "/metrics":
            return int(cells[-1].replace(",", ""))
    return None


async def load(url: str, requests: int) -> None:
    """A bounded load on loopback, a new connection a request (so both workers get some)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(requests):
            data = body([("flow.signin.engage", 1), ("flow.signin.submit", 2)])
            async with http.post(f"{url}/metrics", json=data) as resp:
                assert resp.status == 200


async def pane_until(session: str, ok: Callable[[str], bool], timeout: float = 30) -> str:
    """capture-pane until `ok(pane)` (the dashboard refreshes every second)."""
    async with asyncio.timeout(timeout):
        while True:
            pane = await run(*tmux("capture-pane", "-p", "-t", session))
            if ok(pane):
                return pane
            await asyncio.sleep(0.2)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux: make test installs it")
async def test_top_in_tmux_shows_the_numbers_moving(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text(
        f'[server]\nworker_dir = "{tmp_path / "w"}"\nshutdown_timeout_seconds = 5\n'
        f'[flow]\nkey = "{FLOW_KEY}"\n[sinks.log]\npath = "{tmp_path / "events.log"}"\n'
    )
    session = f"top-{os.getpid()}"
    async with RouterProcess(config, args=["--workers", "2"]) as router:
        await router.wait_for_line("worker 1")
        command = shlex.join([sys.executable, "-m", "router", "top", "--url", router.url])
        await run(*tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "60", command))
        try:
            await load(router.url, 50)
            first = await pane_until(session, lambda p: (metrics_total(p) or 0) >= 50)
            assert "metrics-router top" in first and "sinks" in first and "heartbeat: ok" in first
            await load(router.url, 50)
            second = await pane_until(session, lambda p: (metrics_total(p) or 0) >= 100)
            assert metrics_total(second) != metrics_total(first)
            # The rate column moved too: some refresh saw requests arriving.
            row = next(line for line in second.splitlines() if line.startswith("/metrics "))
            accepted = next(line for line in second.splitlines() if line.startswith("accepted"))
            assert int(accepted.split()[-1].replace(",", "")) >= 200, second
            assert row.split()[1] != "-", second
        finally:
            await run(*tmux("kill-server"))
