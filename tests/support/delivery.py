"""Shared pieces of the delivery tests: fakes on loopback and sinks pointed at them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from router.dispatch import Delivery
from router.dispatch.deadletter import DeadLetter, DeadLetters
from router.records import AmplitudeEvent, Record
from router.sinks.amplitude import AmplitudeSink
from router.sinks.base import Sink
from router.sinks.retry import Backoff

AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]
HMAC_KEY = "test-hmac-key"
DEVICE = "0f3a6c1e9b7d4e2a8c5b1d0e7f6a9b3c"
UID = "44794bdf0be84d4e8c7a8026b8580fa3"
# Fast, deterministic retries: every wait is the ceiling, a few milliseconds.
FAST = Backoff(0.001, 0.004, rng=lambda: 1.0)


def read_dead_letters(path: str | Path) -> list[DeadLetter]:
    """Every dead letter in the store at `path`, oldest first (read once the sink is closed)."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT id, destination, reason, time, kind, record, detail FROM dead_letters"
            " ORDER BY id"
        ).fetchall()
    return [
        DeadLetter(
            id=i, destination=d, reason=r, time=t, kind=k, record=json.loads(rec), detail=det
        )
        for i, d, r, t, k, rec, det in rows
    ]


async def deliver(sink: Sink, tmp_path: Path, records: Sequence[Record]) -> None:
    """Send one batch as a runner would: through Delivery, which counts and dead-letters
    into `tmp_path / "dead.jsonl"` (read back with `read_dead_letters`)."""
    store = DeadLetters(tmp_path / "dead.jsonl", sink.stats)  # opened on first use
    try:
        assert await Delivery(sink, sink.stats, store).send(records) is None
    finally:
        await store.close()


def amplitude_sink(server: TestServer, tmp_path: Path, **overrides: Any) -> AmplitudeSink:
    options: dict[str, Any] = {
        "api_key": "test-api-key",
        "hmac_key": HMAC_KEY,
        "url": str(server.make_url("/batch")),
        "identify_url": str(server.make_url("/identify")),
        "backoff": FAST,
        "throttle_pause_seconds": 0.05,
        "max_retry_seconds": 30.0,
        "request_timeout_seconds": 5.0,
    }
    options.update(overrides)
    return AmplitudeSink("amplitude", **options)


def event(
    event_type: str = "fxa_login - submit",
    time: int = 1_700_000_000_000,
    device_id: str | None = DEVICE,
    user_id: str | None = UID,
    **kw: Any,
) -> AmplitudeEvent:
    return AmplitudeEvent(
        event_type=event_type,
        time=time,
        device_id=device_id,
        user_id=user_id,
        session_id=1_699_999_990_000,
        **kw,
    )
