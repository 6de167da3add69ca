"""Several workers on one port: identity directories, counters that add up, signals."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from pathlib import Path

import aiohttp
from aiohttp import web

from router.ruletable import default_rules_path
from router.stats import Key, Stats
from router.workers import (
    SNAPSHOT,
    aggregate,
    claim_worker_dir,
    control_socket_options,
    read_snapshot,
    snapshot_ctx,
    worker_dirs,
    write_snapshot,
)

from .conftest import FLOW_KEY
from .support.bodies import body
from .support.process import RouterProcess


def test_workers_claim_the_first_free_directory(tmp_path: Path) -> None:
    first = claim_worker_dir(tmp_path)
    second = claim_worker_dir(tmp_path)
    assert (first.index, second.index) == (0, 1)
    first.release()  # its worker died
    again = claim_worker_dir(tmp_path)
    assert again.index == 0 and again.path == first.path
    assert [p.name for p in worker_dirs(tmp_path)] == ["worker-0", "worker-1"]
    again.release()
    second.release()


def test_aggregate_sums_every_directory_including_dead_workers(tmp_path: Path) -> None:
    for k, sent in enumerate((5, 7, 11)):
        (tmp_path / f"worker-{k}").mkdir()
        write_snapshot(
            tmp_path / f"worker-{k}" / SNAPSHOT,
            {("sink.sent", (("sink", "log"),)): sent, ("rules.reload", (("result", "ok"),)): 1},
        )
    (tmp_path / "worker-3").mkdir()
    (tmp_path / "worker-3" / SNAPSHOT).write_bytes(b"\xc1garbage")  # unreadable: skipped
    total = aggregate(tmp_path)
    assert total == {
        ("sink.sent", (("sink", "log"),)): 23,
        ("rules.reload", (("result", "ok"),)): 3,
    }
    assert aggregate(tmp_path / "missing") == {}
    # A worker's own counters are taken live, in place of its (older) snapshot.
    live: dict[Path, dict[Key, int]] = {
        tmp_path / "worker-1": {("sink.sent", (("sink", "log"),)): 9}
    }
    assert aggregate(tmp_path, live)[("sink.sent", (("sink", "log"),))] == 25


async def test_snapshots_are_written_periodically_and_at_exit(tmp_path: Path) -> None:
    stats = Stats()
    path = tmp_path / SNAPSHOT
    app = web.Application()
    app.cleanup_ctx.append(snapshot_ctx(stats, path))
    runner = web.AppRunner(app)
    await runner.setup()
    stats.incr("x", 3)
    async with asyncio.timeout(5):
        while read_snapshot(path) != {("x", ()): 3}:
            await asyncio.to_thread(path.exists)
    stats.incr("x", 4, {"a": "b"})
    await runner.cleanup()
    assert read_snapshot(path) == {("x", ()): 3, ("x", (("a", "b"),)): 4}
    assert [p.name for p in tmp_path.iterdir()] == [SNAPSHOT]  # no temporary files left


def write_config(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    rules_dir = tmp_path / "rules"
    shutil.copytree(default_rules_path(), rules_dir)
    log_path = tmp_path / "events.log"
    worker_dir = tmp_path / "workers"
    config = tmp_path / "router.toml"
    config.write_text(
        f'[server]\nworker_dir = "{worker_dir}"\nshutdown_timeout_seconds = 5\n'
        f'[flow]\nkey = "{FLOW_KEY}"\n[rules]\npaths = ["{rules_dir}"]\n'
        f'[sinks.log]\npath = "{log_path}"\n'
    )
    return config, rules_dir, log_path, worker_dir


async def wait_count(router: RouterProcess, needle: str, count: int) -> None:
    async with asyncio.timeout(20):
        while sum(needle in line for line in router.stderr_lines) < count:
            assert router.proc is not None and router.proc.stderr is not None
            raw = await router.proc.stderr.readline()
            if not raw:
                raise AssertionError(f"router exited: {router.stderr_lines}")
            router.stderr_lines.append(raw.decode(errors="replace"))


async def post_many(url: str, count: int) -> None:
    # A new connection each time, so the kernel's SO_REUSEPORT hash spreads them.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(count):
            data = body([("flow.signin.engage", 1), ("flow.signin.submit", 2)])
            async with http.post(f"{url}/metrics", json=data) as resp:
                assert resp.status == 200


ACCEPTED = re.compile(r"^metrics_router_metrics_events_accepted_total (\d+)$", re.M)
WORKER_LABEL = re.compile(r'^metrics_router_sink_queue_depth\{sink="log",worker="(\d+)"\}', re.M)


async def stats_from_every_worker(url: str, workers: int, expected: int) -> None:
    """Ask /__stats__ until every worker has answered with `expected` accepted events.

    Each worker's own counters are live, the others' come from snapshots up to a second
    old: an answer may be behind, never ahead, and each worker must catch up.
    """
    caught_up: set[str] = set()
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        asyncio.timeout(20),
    ):
        while len(caught_up) < workers:
            async with http.get(f"{url}/__stats__") as resp:
                assert resp.status == 200
                text = await resp.text()
            label, accepted = WORKER_LABEL.search(text), ACCEPTED.search(text)
            assert label is not None and accepted is not None, text
            assert int(accepted[1]) <= expected, text
            if int(accepted[1]) == expected:
                caught_up.add(label[1])


async def test_two_workers_share_the_port_reload_on_hup_and_add_up(tmp_path: Path) -> None:
    config, rules_dir, log_path, worker_dir = write_config(tmp_path)
    # A HOME where nothing can be created: gunicorn's default control socket
    # (~/.gunicorn/gunicorn.ctl, shared by every router of the user) would fail there.
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    async with RouterProcess(config, {"HOME": str(home)}, ["--workers", "2"]) as router:
        await wait_count(router, "ready in", 2)
        assert (worker_dir / "gunicorn.ctl").is_socket()  # this router's own
        await post_many(router.url, 100)
        # Whichever worker answers, /__stats__ shows both workers' requests.
        await stats_from_every_worker(router.url, 2, 100 * 2)

        router.signal(signal.SIGHUP)
        await wait_count(router, "rules reloaded", 2)

        # A broken rule set on HUP: both workers refuse it and keep serving.
        (rules_dir / "broken.toml").write_text("[[rule]\nthis is not toml")
        router.signal(signal.SIGHUP)
        await wait_count(router, "rules reload refused", 2)
        await post_many(router.url, 20)
        await stats_from_every_worker(router.url, 2, 120 * 2)

        router.signal(signal.SIGTERM)
        assert await router.wait() == 0, "".join(router.stderr_lines)
    errors = [x for x in router.stderr_lines if "ontrol s" in x and ("rror" in x or "ail" in x)]
    assert not errors

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(lines) == 120 * 4  # 2 flow + 2 amplitude records a request
    assert len({line["Pid"] for line in lines}) == 2  # both workers took requests
    total = aggregate(worker_dir)
    assert total[("sink.sent", (("sink", "log"),))] == 480
    assert total[("rules.reload", (("result", "ok"),))] == 2
    assert total[("rules.reload", (("result", "refused"),))] == 2

    # A restarted set picks up the same directories, and the sums keep growing.
    (rules_dir / "broken.toml").unlink()
    async with RouterProcess(config, args=["--workers", "2"]) as router:
        await wait_count(router, "ready in", 2)
        await post_many(router.url, 10)
        router.signal(signal.SIGTERM)
        assert await router.wait() == 0
    assert [p.name for p in worker_dirs(worker_dir)] == ["worker-0", "worker-1"]
    assert aggregate(worker_dir)[("sink.sent", (("sink", "log"),))] == 520


async def test_a_broken_rule_set_at_start_stops_the_service(tmp_path: Path) -> None:
    config, rules_dir, _, _ = write_config(tmp_path)
    (rules_dir / "broken.toml").write_text("[[rule]\nthis is not toml")
    router = RouterProcess(config, args=["--workers", "2"])
    try:
        await router.start()
    except AssertionError as exc:
        assert "exited before" in str(exc)
    else:
        raise AssertionError("started with a broken rule set")
    assert await router.wait() == 1
    assert any("broken.toml" in line for line in router.stderr_lines)


def test_each_router_has_its_own_control_socket(tmp_path: Path) -> None:
    known = {"control_socket", "control_socket_disable"}
    assert control_socket_options(tmp_path / "a", known) == {
        "control_socket": str(tmp_path / "a" / "gunicorn.ctl")
    }
    assert control_socket_options(tmp_path / ("x" * 120), known) == {"control_socket_disable": True}
    assert control_socket_options(tmp_path, set()) == {}  # a gunicorn without one
