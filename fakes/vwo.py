"""A fake VWO events endpoint: `batch-events-v2` and `/events/t`, with injectable faults."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from .base import FaultyServer

Fault = int | Literal["reset", "hang"]


@dataclass
class FakeVwo(FaultyServer):
    faults: list[Fault] = field(default_factory=list)
    account_id: int = 123456
    sdk_key: str = "example-sdk-key"

    # (query, payload `d`) for every accepted conversion.
    events: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    batch_requests: int = 0
    single_requests: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.app.router.add_post("/server-side/batch-events-v2", self.handle_batch)
        self.app.router.add_post("/events/t", self.handle_single)

    def _answer(self, status: int) -> web.Response:
        self.statuses.append(status)
        return web.json_response({"status": status}, status=status)

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        fault, forced = await self._take_fault(request)
        if forced is not None:
            return forced
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
        self.taken += len(body["ev"])
        if self.keep:
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
        self.taken += 1
        if self.keep:
            self.events.append((query, json.loads(raw)["d"]))
        await self._notify()
        return self._answer(200)
