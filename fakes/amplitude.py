"""A fake Amplitude HTTP/Batch + Identify API.

It validates like the real one (event_type, an id of at least `min_id_length`
characters, integer time), deduplicates by `insert_id` as Amplitude does, and can be
told to inject every fault the sink must survive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import msgspec
from aiohttp import web

from .base import FaultyServer

Fault = int | Literal["reset", "hang", "ingest_then_500"]


class _Event(msgspec.Struct):
    event_type: str = ""
    user_id: str | None = None
    device_id: str | None = None
    time: int | None = None


class _Options(msgspec.Struct):
    min_id_length: int = 5


class _Batch(msgspec.Struct):
    api_key: str
    events: list[_Event]
    options: _Options = msgspec.field(default_factory=_Options)


_batch = msgspec.json.Decoder(_Batch)


@dataclass
class FakeAmplitude(FaultyServer):
    api_key: str = "test-api-key"
    # As FaultyServer's, plus "ingest_then_500" (take the events, answer 500).
    faults: list[Fault] = field(default_factory=list)
    # event_type -> (field, kind) : such events are refused with a per-event 400.
    reject: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Bodies larger than this get 413.
    max_bytes: int | None = None
    # Devices / users that get 429 for their first `throttle_times` requests.
    throttle_devices: set[str] = field(default_factory=set)
    throttle_users: set[str] = field(default_factory=set)
    throttle_times: int = 1
    quota_devices: set[str] = field(default_factory=set)

    requests: list[list[dict[str, Any]]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    ingested: dict[str, dict[str, Any]] = field(default_factory=dict)
    identifications: list[dict[str, Any]] = field(default_factory=list)
    # "identify" / "events" for each accepted request, in arrival order.
    order: list[str] = field(default_factory=list)
    _throttled: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.app.router.add_post("/batch", self.handle_events)
        self.app.router.add_post("/2/httpapi", self.handle_events)
        self.app.router.add_post("/identify", self.handle_identify)

    def _answer(self, status: int, body: dict[str, Any]) -> web.Response:
        self.statuses.append(status)
        return web.json_response(body, status=status)

    async def _fault(self, request: web.Request) -> web.StreamResponse | str | None:
        fault, forced = await self._take_fault(request)
        if forced is not None:
            return forced
        if fault == "ingest_then_500":
            return "ingest_then_500"
        if isinstance(fault, int):
            return self._answer(fault, {"code": fault, "error": "injected"})
        return None

    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        fault = await self._fault(request)
        if isinstance(fault, web.StreamResponse):
            await self._notify()
            return fault
        if self.max_bytes is not None and len(raw) > self.max_bytes:
            await self._notify()
            return self._answer(413, {"code": 413, "error": "Payload too large"})
        if not self.keep and not (self.reject or self.throttle_devices or self.throttle_users):
            quick = self._quick(raw, fault)
            if quick is not None:
                return quick
        data = json.loads(raw)
        if data.get("api_key") != self.api_key:
            await self._notify()
            return self._answer(400, {"code": 400, "error": "Invalid API key: bad"})
        events: list[dict[str, Any]] = data["events"]
        if self.keep:
            self.requests.append(events)
            self.received.extend(events)
        min_len = data.get("options", {}).get("min_id_length", 5)
        invalid: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            if event.get("event_type") in self.reject:
                name, kind = self.reject[event["event_type"]]
                (invalid if kind == "invalid" else missing).setdefault(name, []).append(i)
            if not event.get("event_type"):
                missing.setdefault("event_type", []).append(i)
            ids = [str(v) for k in ("user_id", "device_id") if (v := event.get(k))]
            if not ids or any(len(v) < min_len for v in ids):
                invalid.setdefault("user_id", []).append(i)
            if not isinstance(event.get("time"), int):
                invalid.setdefault("time", []).append(i)
        if invalid or missing:
            await self._notify()
            return self._answer(
                400,
                {
                    "code": 400,
                    "error": "Request missing required field",
                    "events_with_invalid_fields": invalid,
                    "events_with_missing_fields": missing,
                },
            )
        throttled_devices: dict[str, int] = {}
        throttled_users: dict[str, int] = {}
        quota: dict[str, int] = {}
        for event in events:
            device, user = event.get("device_id"), event.get("user_id")
            if device in self.quota_devices:
                quota[device] = 1
            for key, table, out in (
                (device, self.throttle_devices, throttled_devices),
                (user, self.throttle_users, throttled_users),
            ):
                if key in table and self._throttled.get(key, 0) < self.throttle_times:
                    out[key] = 31
        if throttled_devices or throttled_users or quota:
            for key in (*throttled_devices, *throttled_users):
                self._throttled[key] = self._throttled.get(key, 0) + 1
            await self._notify()
            return self._answer(
                429,
                {
                    "code": 429,
                    "error": "Too many requests for some devices and users",
                    "eps_threshold": 30,
                    "throttled_devices": throttled_devices,
                    "throttled_users": throttled_users,
                    "throttled_events": [],
                    "exceeded_daily_quota_devices": quota,
                    "exceeded_daily_quota_users": {},
                },
            )
        self.taken += len(events)
        if self.keep:
            self.order.append("events")
            for event in events:
                self.ingested.setdefault(event.get("insert_id") or str(len(self.ingested)), event)
        await self._notify()
        if fault == "ingest_then_500":
            return self._answer(500, {"code": 500, "error": "injected after ingest"})
        return self._answer(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(raw),
                "server_upload_time": 0,
            },
        )

    def _quick(self, raw: bytes, fault: object) -> web.Response | None:
        """A batch that is plainly valid, checked in C (msgspec): for the bench's rates.

        None for anything else, which the full path then answers exactly as always.
        """
        if fault is not None or self.quota_devices:
            return None
        try:
            batch = _batch.decode(raw)
        except msgspec.MsgspecError:
            return None
        least = batch.options.min_id_length
        if batch.api_key != self.api_key:
            return None
        for event in batch.events:
            ids = [v for v in (event.user_id, event.device_id) if v]
            if not event.event_type or event.time is None or not ids:
                return None
            if any(len(v) < least for v in ids):
                return None
        self.taken += len(batch.events)
        return self._answer(
            200,
            {
                "code": 200,
                "events_ingested": len(batch.events),
                "payload_size_bytes": len(raw),
                "server_upload_time": 0,
            },
        )

    async def handle_identify(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        fault = await self._fault(request)
        if isinstance(fault, web.StreamResponse):
            await self._notify()
            return fault
        form = parse_qs(raw.decode())
        if form.get("api_key") != [self.api_key]:
            await self._notify()
            return web.Response(status=400, text="invalid api_key")
        identification = json.loads(form["identification"][0])
        if isinstance(identification, dict):
            identification = [identification]
        self.identifications.extend(identification)
        self.order.append("identify")
        await self._notify()
        return web.Response(text="success")
