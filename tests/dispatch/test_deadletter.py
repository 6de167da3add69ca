"""The dead-letter store, its replay through a real sink, and `metrics-router dlq`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from fakes.vwo import FakeVwo
from router.dispatch.deadletter import DeadLetters
from router.dispatch.replay import replay
from router.records import AmplitudeEvent, FlowEvent, Record, VwoConversion

from ..support.destinations import DedupDestination, FlowPostSink
from ..support.spool_sinks import GatedSink
from .test_durability import AiohttpServer
from .test_runner import Picky

VWO_SETTINGS = Path(__file__).parents[1] / "data" / "vwo-settings.json"


def flow_events(count: int) -> list[Record]:
    return [
        FlowEvent(event=f"flow.e{i}", flow_id="a" * 32, flow_time=i, time=1_700_000_000_000 + i)
        for i in range(count)
    ]


async def test_add_list_get_purge(tmp_path: Path) -> None:
    async with DeadLetters(tmp_path / "dlq.db") as store:
        assert await store.add("amplitude", "invalid_id", [AmplitudeEvent(event_type="x", time=1)])
        await store.add("vwo", "sink_error", flow_events(2), detail="RuntimeError: boom")
        await store.add("vwo", "raw_thing", [{"not": "a record"}])
        everything = await store.list()
        assert [(d.destination, d.reason, d.kind) for d in everything] == [
            ("amplitude", "invalid_id", "amplitude"),
            ("vwo", "sink_error", "flow"),
            ("vwo", "sink_error", "flow"),
            ("vwo", "raw_thing", "raw"),
        ]
        assert [d.id for d in await store.list(destination="vwo", reason="sink_error")] == [2, 3]
        assert len(await store.list(limit=1)) == 1
        letter = await store.get(2)
        assert letter is not None and letter.detail == "RuntimeError: boom"
        assert letter.to_record() == flow_events(1)[0]
        assert (await store.get(4)) is not None and (await store.get(4)).to_record() is None  # type: ignore[union-attr]
        assert await store.get(99) is None
        assert await store.counts() == {
            ("amplitude", "invalid_id"): 1,
            ("vwo", "sink_error"): 2,
            ("vwo", "raw_thing"): 1,
        }
        assert await store.purge(destination="vwo", reason="sink_error") == 2
        assert [d.id for d in await store.list()] == [1, 4]
        assert store.stats.get("dlq.added", destination="vwo", reason="sink_error") == 2


async def test_replay_delivers_and_the_destination_dedups(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    dest = DedupDestination()
    server: TestServer = await aiohttp_server(dest.app)
    sink = FlowPostSink("http", str(server.make_url("/events")))
    records = flow_events(5)
    async with DeadLetters(tmp_path / "dlq.db") as store, sink:
        await store.add("http", "timeout", records)
        await store.add("other", "timeout", flow_events(1))
        result = await replay(store, {"http": sink}, destination="http")
        assert result.sent == 5 and not result.failed
        assert len(dest.received) == 5
        # Replaying the same records again (e.g. after a crash mid-replay) is harmless.
        await store.add("http", "timeout", records)
        result = await replay(store, {"http": sink})
        assert result.sent == 5
        assert result.failed == {"other": "no such sink in the configuration"}
        assert len(dest.received) == 5 and dest.duplicates == 5
        # Replayed rows are gone; the one that could not be sent is kept.
        assert [(d.destination, d.reason) for d in await store.list()] == [("other", "timeout")]


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_dlq_commands(tmp_path: Path) -> None:
    log_path = tmp_path / "events.log"
    config = tmp_path / "router.toml"
    config.write_text(
        f'[deadletter]\npath = "{tmp_path / "dlq.db"}"\n[sinks.log]\npath = "{log_path}"\n'
    )
    async with DeadLetters(tmp_path / "dlq.db") as store:
        await store.add("log", "sink_error", flow_events(3))
        await store.add("log", "other", flow_events(1))

    code, out, err = await cli("dlq", "list", "--config", str(config), "--reason", "sink_error")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0].split("\t")[2:] == ["log", "sink_error", "flow", "flow.e0"]
    assert "3 shown of 3" in err

    code, out, _ = await cli("dlq", "show", "--config", str(config), "2")
    assert code == 0 and json.loads(out)["record"]["event"] == "flow.e1"
    assert (await cli("dlq", "show", "--config", str(config), "42"))[0] == 1

    code, out, _ = await cli("dlq", "replay", "--config", str(config), "--reason", "sink_error")
    assert code == 0 and "replayed 3 records" in out
    written = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [w["Fields"]["event"] for w in written] == ["flow.e0", "flow.e1", "flow.e2"]

    assert (await cli("dlq", "purge", "--config", str(config)))[0] == 2
    code, out, _ = await cli("dlq", "purge", "--config", str(config), "--all")
    assert code == 0 and "purged 1 dead letters" in out
    code, out, err = await cli("dlq", "list", "--config", str(config))
    assert out == "" and "0 shown of 0" in err


@pytest.mark.slow
async def test_dlq_replay_ends_when_the_destination_keeps_refusing(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    # The fake knows another account: every request is a 400, which VWO never retries.
    fake = FakeVwo(account_id=999)
    server = await aiohttp_server(fake.app)
    config = tmp_path / "router.toml"
    config.write_text(
        f'[deadletter]\npath = "{tmp_path / "dlq.db"}"\n'
        f'[sinks.vwo]\naccount_id = 123456\nsdk_key = "example-sdk-key"\n'
        f'settings_path = "{VWO_SETTINGS}"\nurl = "{server.make_url("/")}"\n'
    )
    refused = [
        VwoConversion(name="signin_complete", user_id=f"user-{i}", time=1_700_000_000_000 + i)
        for i in range(3)
    ]
    async with DeadLetters(tmp_path / "dlq.db") as store:
        await store.add("vwo", "bad_request", refused)
        before = [(d.id, d.reason) for d in await store.list()]

    code, out, err = await cli("dlq", "replay", "--config", str(config))
    assert code == 1, (out, err)
    assert "replayed 0 records" in out and "vwo: 3 records refused again" in err
    # Replay worked on the rows it started with: one request, not one per new row.
    assert fake.statuses == [400]
    async with DeadLetters(tmp_path / "dlq.db") as store:
        assert [(d.id, d.reason) for d in await store.list()] == before


async def test_replay_keeps_what_is_refused_again_and_stops_on_a_failing_sink(
    tmp_path: Path,
) -> None:
    picky = Picky()  # refuses the records with an odd time
    failing = GatedSink("failing")
    failing.fail_next = 1
    async with DeadLetters(tmp_path / "dlq.db") as store:
        await store.add(
            "picky",
            "timeout",
            [FlowEvent(event="e", flow_id="f", flow_time=0, time=t) for t in range(4)],
        )
        await store.add("failing", "timeout", flow_events(2))
        result = await replay(store, {"picky": picky, "failing": failing})
        assert result.sent == 2 and result.refused == {"picky": 2}
        assert result.failed == {"failing": "RuntimeError: destination refused the batch"}
        assert not result.ok
        left = await store.list()
        # The refused rows are the same rows, not new ones; the failed destination kept all.
        assert [(d.id, d.destination) for d in left] == [
            (2, "picky"),
            (4, "picky"),
            (5, "failing"),
            (6, "failing"),
        ]
        assert failing.attempts == 1 and failing.records == []
