"""The bus tests' nats-server, loopback destination and records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from aiohttp.test_utils import TestServer

from router.dispatch.deadletter import DeadLetters
from router.records import AmplitudeEvent, VwoConversion

from ..support.bus import NatsServer
from ..support.destinations import DedupDestination


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path / "js") as server:
        yield server


@pytest.fixture
async def destination(aiohttp_server: object) -> AsyncIterator[tuple[DedupDestination, str]]:
    dest = DedupDestination()
    server: TestServer = await aiohttp_server(dest.app)  # type: ignore[operator]
    yield dest, str(server.make_url("/events"))


def dead_letters(tmp_path: Path) -> DeadLetters:
    return DeadLetters(tmp_path / "dead.db")


def amplitude(i: int) -> AmplitudeEvent:
    return AmplitudeEvent(
        event_type="fxa_reg - view", time=1_700_000_000_000 + i, user_id=f"{i:032x}"
    )


def vwo(i: int) -> VwoConversion:
    return VwoConversion(name="signup", user_id=f"user-{i}", time=1_700_000_000_000 + i)


async def stream_count(url: str, stream: str = "METRICS") -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        return info.state.messages
    finally:
        await nc.close()
