"""A fake VWO events endpoint: `batch-events-v2` and `/events/t`, with injectable faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Fault = int | Literal["reset", "hang"]


@dataclass
class FakeVwo:
    account_id: int = 123456
    sdk_key: str = "example-sdk-key"
    # Applied to the next requests, one each: an HTTP status, "reset" or "hang".
    faults: list[Fault] = field(default_factory=list)
    hang_all: bool = False

    # (query, payload `d`) for every accepted conversion.
    events: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    batch_requests: int = 0
    single_requests: int = 0

    # Requests hanging right now.
    hung: int = 0

    def __post_init__(self) -> None:
        self.changed = asyncio.Condition()
        self._release = asyncio.Event()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/server-side/batch-events-v2", self.handle_batch)
        self.app.router.add_post("/events/t", self.handle_single)

    def release(self) -> None:
        self.hang_all = False
        self._release.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def _answer(self, status: int) -> web.Response:
        self.statuses.append(status)
        return web.json_response({"status": status}, status=status)

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        fault = self.faults.pop(0) if self.faults else None
        if self.hang_all or fault == "hang":
            self.hung += 1
            await self._notify()
            await self._release.wait()
            self.hung -= 1
            return None
        if fault == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if isinstance(fault, int):
            return self._answer(fault)
        return None

    def _bad(self, query: dict[str, str], keys: tuple[str, ...]) -> bool:
        return any(not query.get(k) for k in keys) or query.get("a") != str(self.account_id)

    async def handle_batch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        fault = await self._fault(request)
        if fault is not None:
            await self._notify()
            return fault
        query = dict(request.query)
        if request.headers.get("Authorization") not in (None, self.sdk_key):
            await self._notify()
            return self._answer(401)
        if self._bad(query, ("a", "env", "sn", "sv")) or query["env"] != self.sdk_key:
            await self._notify()
            return self._answer(400)
        body = json.loads(raw)
        self.batch_requests += 1
        self.events.extend((query, item["d"]) for item in body["ev"])
        await self._notify()
        return self._answer(200)

    async def handle_single(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        fault = await self._fault(request)
        if fault is not None:
            await self._notify()
            return fault
        query = dict(request.query)
        keys = ("en", "a", "env", "eTime", "random", "p", "sn", "sv")
        if self._bad(query, keys) or query["p"] != "FS":
            await self._notify()
            return self._answer(400)
        self.single_requests += 1
        self.events.append((query, json.loads(raw)["d"]))
        await self._notify()
        return self._answer(200)
