"""Durable test sinks and a loopback fake destination that can fail and recover."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp
import msgspec
from aiohttp import web

from router.records import FlowEvent, Record
from router.sinks.base import Kind, Sink
from router.sinks.memory import MemorySink

_encoder = msgspec.msgpack.Encoder()


def record_id(record: Record) -> str:
    """A stable id for a record, like the insert_id the Amplitude sink derives."""
    return hashlib.sha256(_encoder.encode(record)).hexdigest()[:32]


class GatedSink(MemorySink):
    """A durable in-memory sink whose destination is down while `up` is clear.

    Like a delivery sink, `send` returns only once the batch is delivered: it waits
    for `up`. `fail_next` makes the next sends raise (a sink giving up).
    """

    durable: ClassVar[bool] = True

    def __init__(self, name: str = "gated", up: bool = True) -> None:
        super().__init__(name)
        self.up = asyncio.Event()
        if up:
            self.up.set()
        self.fail_next = 0
        self.attempts = 0
        self.sending = asyncio.Event()

    async def send(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        self.sending.set()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("destination refused the batch")
        await self.up.wait()
        await super().send(records)


class FakeDestination:
    """A loopback HTTP destination: POST /events takes a JSON list of {id, record}.

    While `up` is false it answers 503 and keeps nothing. It deduplicates by id, as
    Amplitude does by insert_id, and counts duplicates it saw.
    """

    def __init__(self) -> None:
        self.up = True
        # Simulated latency of the destination, seconds per request.
        self.delay = 0.0
        self.received: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.requests = 0
        self.refused = 0
        self.changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/events", self.post_events)

    async def post_events(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.up:
            self.refused += 1
            return web.Response(status=503)
        items = msgspec.json.decode(await request.read(), type=list[dict[str, Any]])
        for item in items:
            if item["id"] in self.received:
                self.duplicates += 1
            else:
                self.received[item["id"]] = item["record"]
        async with self.changed:
            self.changed.notify_all()
        return web.json_response({"ok": len(items)})

    def flow_ids(self) -> dict[str, set[str]]:
        """flow_id -> the flow event names received for it."""
        found: dict[str, set[str]] = {}
        for record in self.received.values():
            found.setdefault(record["flow_id"], set()).add(record["event"])
        return found

    async def wait_for(self, done: Any, timeout: float = 30.0) -> None:
        """Wait until `done()` is true."""
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(done)


class HttpPostSink(Sink):
    """A durable sink that POSTs flow events to a FakeDestination, retrying until it takes them."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"flow"})
    durable: ClassVar[bool] = True

    def __init__(self, name: str, url: str, max_retry_seconds: float = 3600.0) -> None:
        super().__init__(name)
        self.url = url
        self.max_retry_seconds = max_retry_seconds
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def send(self, records: Sequence[Record]) -> None:
        assert self._session is not None
        body = msgspec.json.encode(
            [{"id": record_id(r), "record": r} for r in records if isinstance(r, FlowEvent)]
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_retry_seconds
        delay = 0.01
        while True:
            try:
                async with self._session.post(
                    self.url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise RuntimeError(f"{self.url}: not delivered in {self.max_retry_seconds}s")
            # Retry backoff (not test synchronisation): the destination is down.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
