"""Delivery to VWO (Feature Management): conversions as trackEvent would send them.

Only events that are a metric `identifier` in the account's settings file are sent;
the others are counted and logged as "event not found", as the SDK does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from .. import __version__
from ..records import Record, VwoConversion
from . import retry
from .base import Dropped, Kind
from .http import HttpDeliverySink
from .retry import Action, Backoff, RetryPolicy, Sleep, sleep

log = logging.getLogger(__name__)

VWO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://vwo.com")


def visitor_id(account_id: int | str, user_id: str) -> str:
    """VWO's visitor id: UUIDv5 chain URL → vwo.com → account → user, 32 upper-case hex."""
    account_ns = uuid.uuid5(VWO_NAMESPACE, str(account_id))
    return uuid.uuid5(account_ns, user_id).hex.upper()


class Metric(msgspec.Struct):
    identifier: str


class Feature(msgspec.Struct):
    metrics: list[Metric] = []


class VwoSettingsFile(msgspec.Struct):
    accountId: int | str | None = None
    features: list[Feature] = []


def metric_identifiers(data: bytes) -> frozenset[str]:
    """Every `features[].metrics[].identifier` of a VWO settings file."""
    settings = msgspec.json.decode(data, type=VwoSettingsFile)
    return frozenset(m.identifier for f in settings.features for m in f.metrics)


def payload(
    conversion: VwoConversion,
    visitor: str,
    sdk_key: str,
    sdk_name: str,
    sdk_version: str,
    in_batch: bool,
) -> dict[str, Any]:
    """The `{"d": ...}` body trackEvent sends for one conversion.

    msgId is derived from the conversion, so a resent or replayed one carries the same id.
    """
    msg = uuid.uuid5(VWO_NAMESPACE, f"{visitor}:{conversion.name}:{conversion.time}")
    props: dict[str, Any] = {
        **conversion.properties,
        "vwo_sdkName": sdk_name,
        "vwo_sdkVersion": sdk_version,
        "vwo_envKey": sdk_key,
        "isCustomEvent": True,
    }
    d: dict[str, Any] = {
        "msgId": f"{msg}-{conversion.time}",
        "visId": visitor,
        "sessionId": conversion.time // 1000,
        "event": {"name": conversion.name, "time": conversion.time, "props": props},
        "visitor": {"props": {"vwo_fs_environment": sdk_key}},
    }
    if in_batch:
        # A batch has no per-event query string: the visitor's UA and IP travel in `d`.
        if conversion.user_agent:
            d["visitor_ua"] = conversion.user_agent
        if conversion.ip:
            d["visitor_ip"] = conversion.ip
    return {"d": d}


def classify(status: int) -> Action:
    """Never retry a 400; retry anything else within the budget."""
    if 200 <= status < 300:
        return retry.Done()
    if status == 400:
        return retry.Drop("bad_request")
    return retry.Retry(f"http_{status}")


Item = tuple[VwoConversion, dict[str, Any]]


def _conversion(item: Item) -> VwoConversion:
    return item[0]


class VwoSink(HttpDeliverySink):
    """Sends conversions through `batch-events-v2` (or `/events/t` one by one)."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"vwo"})

    def __init__(
        self,
        name: str,
        *,
        account_id: int,
        sdk_key: str,
        url: str,
        settings_path: str,
        batch_events: bool = True,
        authorization_header: bool = True,
        user_field: str = "uid",
        concurrency: int = 2,
        request_timeout_seconds: float = 30.0,
        max_retries: int = 3,
        backoff: Backoff | None = None,
        sdk_name: str = "metrics-router",
        sdk_version: str = "",
        sleep: Sleep = sleep,
    ) -> None:
        super().__init__(
            name, concurrency=concurrency, request_timeout_seconds=request_timeout_seconds
        )
        self.account_id = account_id
        self.sdk_key = sdk_key
        self.url = url.rstrip("/")
        self.settings_path = settings_path
        self.batch_events = batch_events
        self.authorization_header = authorization_header
        self.user_field = user_field
        self.policy = RetryPolicy(max_retries, backoff or Backoff(2.0, 60.0), sleep)
        self.sdk_name = sdk_name
        self.sdk_version = sdk_version or __version__
        self.identifiers: frozenset[str] = frozenset()
        self._not_found_logged: set[str] = set()
        self._encoder = msgspec.json.Encoder()

    async def start(self) -> None:
        data = await asyncio.to_thread(Path(self.settings_path).read_bytes)
        self.identifiers = metric_identifiers(data)
        await super().start()

    def _user_id(self, conversion: VwoConversion) -> str | None:
        if self.user_field == "uid":
            return conversion.user_id or None
        value = conversion.properties.get(self.user_field)
        return str(value) if value not in (None, "") else None

    async def send(self, records: Sequence[Record]) -> list[Dropped]:
        ready: list[Item] = []
        dropped: list[Dropped] = []
        for record in records:
            if not isinstance(record, VwoConversion):
                dropped.append(Dropped("not_a_vwo_conversion", record))
                continue
            if record.name not in self.identifiers:
                # Not an error (the SDK skips it too): counted, not dead-lettered.
                dropped.append(Dropped("event_not_found", record, keep=False))
                self._count("sink.event_not_found", 1)
                if record.name not in self._not_found_logged:
                    # Names come from the rule table, so this set stays small.
                    self._not_found_logged.add(record.name)
                    log.warning(
                        "sink %s: event not found: %r is no metric identifier in %s",
                        self.name,
                        record.name,
                        self.settings_path,
                    )
                continue
            user = self._user_id(record)
            if user is None:
                dropped.append(Dropped("missing_user_id", record))
                continue
            ready.append(
                (
                    record,
                    payload(
                        record,
                        visitor_id(self.account_id, user),
                        self.sdk_key,
                        self.sdk_name,
                        self.sdk_version,
                        self.batch_events,
                    ),
                )
            )
        if not ready:
            return dropped
        if self.batch_events:
            batches = [ready]
            attempt = self._post_batch
        else:
            batches = [[item] for item in ready]
            attempt = self._post_single
        for part in await asyncio.gather(
            *(
                self.policy.run(batch, attempt, letter=_conversion, on_retry=self._retried)
                for batch in batches
            )
        ):
            dropped += part
        return dropped

    async def _post_batch(self, items: list[Item]) -> Action:
        headers = {"Content-Type": "application/json"}
        if self.authorization_header:
            headers["Authorization"] = self.sdk_key
        status, _ = await self._post(
            f"{self.url}/server-side/batch-events-v2",
            params={
                "a": str(self.account_id),
                "env": self.sdk_key,
                "sn": self.sdk_name,
                "sv": self.sdk_version,
            },
            data=self._encoder.encode({"ev": [p for _, p in items]}),
            headers=headers,
        )
        return classify(status)

    async def _post_single(self, items: list[Item]) -> Action:
        ((conversion, body),) = items
        params = {
            "en": conversion.name,
            "a": str(self.account_id),
            "env": self.sdk_key,
            "eTime": str(conversion.time),
            "random": repr(random.random()),
            "p": "FS",
            "sn": self.sdk_name,
            "sv": self.sdk_version,
        }
        if conversion.user_agent:
            params["visitor_ua"] = conversion.user_agent
        if conversion.ip:
            params["visitor_ip"] = conversion.ip
        status, _ = await self._post(
            f"{self.url}/events/t",
            params=params,
            data=self._encoder.encode(body),
            headers={"Content-Type": "application/json"},
        )
        return classify(status)
