"""A loopback destination that deduplicates by id, and the sink that posts to it.

Used by the spool, durability, dead-letter and JetStream tests (and the sink
processes they start): one fake, one sink, one wire format `[{"id", "record"}]`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import aiohttp
import msgspec
from aiohttp import web

from router.ids import record_id
from router.records import Record
from router.sinks import retry
from router.sinks.base import Kind, Sink
from router.sinks.http import transport_errors
from router.sinks.retry import Action, Backoff, RetryPolicy

ID_KEY = "test-id-key"
_msgpack = msgspec.msgpack.Encoder()


def content_id(record: Record) -> str:
    """An id from the whole record: two records differing anywhere differ."""
    return hashlib.sha256(_msgpack.encode(record)).hexdigest()[:32]


def bus_id(record: Record) -> str:
    """The id JetStream publishes a record under (`Nats-Msg-Id`)."""
    return record_id(ID_KEY.encode(), record)


class Posted(msgspec.Struct):
    id: str
    record: dict[str, Any]


class DedupDestination:
    """POST /events takes `[{"id", "record"}]` and, like Amplitude, counts an id once.

    While `up` is false it answers 503 and keeps nothing; `fail_next` answers 503 to
    that many requests; `delay` is its latency; `gate`, when set, holds every request
    until it is set (a delivery "in flight").
    """

    def __init__(self) -> None:
        self.up = True
        self.delay = 0.0
        self.fail_next = 0
        self.gate: asyncio.Event | None = None
        self.received: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.requests = 0
        self.refused = 0
        self.arrived = asyncio.Event()
        self.changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/events", self.post_events)

    async def post_events(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)  # the destination's latency, not synchronisation
        if not self.up or self.fail_next:
            self.fail_next = max(0, self.fail_next - 1)
            self.refused += 1
            return web.Response(status=503)
        items = msgspec.json.decode(await request.read(), type=list[Posted])
        for item in items:
            if item.id in self.received:
                self.duplicates += 1
            else:
                self.received[item.id] = item.record
        async with self.changed:
            self.changed.notify_all()
        return web.json_response({"ok": len(items)})

    def flow_ids(self) -> dict[str, set[str]]:
        """flow_id -> the flow event names received for it."""
        found: dict[str, set[str]] = {}
        for record in self.received.values():
            found.setdefault(record["flow_id"], set()).add(record["event"])
        return found

    async def wait_for(self, done: int | Callable[[], bool], timeout: float = 30.0) -> None:
        """Until `done()` is true, or `done` distinct ids arrived."""
        if isinstance(done, int):
            count = done
            done = lambda: len(self.received) >= count  # noqa: E731
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(done)


class HttpPostSink(Sink):
    """A durable sink posting records with their ids to a DedupDestination.

    Any answer but 200 is retried within `max_retry_seconds` (0: not at all); then
    `send` raises, so the batch stays buffered (or is naked, by a forwarder).
    """

    kinds: ClassVar[frozenset[Kind]] = frozenset({"amplitude", "vwo"})
    durable: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        url: str,
        max_retry_seconds: float = 0.0,
        ids: Callable[[Record], str] = bus_id,
    ) -> None:
        super().__init__(name)
        self.url = url
        self.ids = ids
        backoff = Backoff(0.01, 0.1)
        self.policy = RetryPolicy(backoff.retries_within(max_retry_seconds), backoff)
        self.last_status = 0
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def _attempt(self, records: list[Record]) -> Action:
        assert self._session is not None
        body = [Posted(self.ids(r), msgspec.to_builtins(r)) for r in records]
        with transport_errors():
            async with self._session.post(
                self.url,
                data=msgspec.json.encode(body),
                headers={"Content-Type": "application/json"},
            ) as resp:
                self.last_status = resp.status
                if resp.status == 200:
                    return retry.Done()
                return retry.Retry(f"http_{resp.status}")

    async def send(self, records: Sequence[Record]) -> None:
        if records and await self.policy.run(list(records), self._attempt):
            raise RuntimeError(f"destination answered {self.last_status}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class FlowPostSink(HttpPostSink):
    """Flow events, each id from its whole content, retried for up to an hour."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"flow"})

    def __init__(self, name: str, url: str, max_retry_seconds: float = 3600.0) -> None:
        super().__init__(name, url, max_retry_seconds, content_id)
