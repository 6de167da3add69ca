"""Delivery to Amplitude's HTTP API: hashed ids, insert ids, Identify calls, per-event outcomes.

Three layers, read top to bottom: pure functions that prepare events (`hash_id` and
`insert_id`, shared with the JetStream sink in `router/ids.py`, and
`split_user_properties`); `classify`, which turns a response into an `Outcome`; and
`AmplitudeSink`, which applies the policy (resend, split, pause, back off, dead-letter)
to each outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import aiohttp
import msgspec

from ..deadletter import DeadLetters
from ..ids import hash_id, insert_id
from ..records import AmplitudeEvent, Record
from .base import Kind
from .http import HttpDeliverySink
from .retry import Backoff, Sleep, sleep

log = logging.getLogger(__name__)

# -- preparing events (pure) ---------------------------------------------------------------


def split_user_properties(props: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain properties, `$operator` properties): operators go to the Identify API."""
    plain: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    for key, value in props.items():
        (ops if key.startswith("$") else plain)[key] = value
    return plain, ops


def refusal(event: AmplitudeEvent) -> str | None:
    """Why an event can never be accepted, or None (FxA's amplitude-send checks)."""
    if not event.event_type:
        return "missing_event_type"
    if not event.user_id and not event.device_id:
        return "missing_id"
    if event.time <= 0:
        return "bad_time"
    return None


class Identification(msgspec.Struct, omit_defaults=True):
    user_properties: dict[str, Any]
    user_id: str | None = None
    device_id: str | None = None


class Prepared(msgspec.Struct):
    """An outgoing event and its JSON, encoded once and resent as is.

    `source` is the record as the pipeline made it (raw uid, no insert_id): dead letters
    keep that form, so a replay goes through `prepare` exactly once, like the first time.
    """

    event: AmplitudeEvent
    data: bytes
    source: AmplitudeEvent


# -- classifying responses (pure) ----------------------------------------------------------


class Ok(msgspec.Struct):
    pass


class Retry(msgspec.Struct):
    """Nothing (certainly) taken; the same events may be sent again."""

    reason: str


class Rejected(msgspec.Struct):
    """Amplitude named bad events: drop exactly these (index -> reason), resend the rest."""

    invalid: dict[int, str]


class BadRequest(msgspec.Struct):
    """A 400 that names no event: the fault is somewhere in the batch."""

    reason: str


class InvalidApiKey(msgspec.Struct):
    message: str


class TooLarge(msgspec.Struct):
    pass


class Throttled(msgspec.Struct):
    devices: frozenset[str]
    users: frozenset[str]
    quota_devices: frozenset[str]
    quota_users: frozenset[str]


Outcome = Ok | Retry | Rejected | BadRequest | InvalidApiKey | TooLarge | Throttled


class ErrorBody(msgspec.Struct):
    code: int | None = None
    error: str | None = None
    missing_field: str | None = None
    events_with_invalid_fields: dict[str, list[int]] = {}
    events_with_missing_fields: dict[str, list[int]] = {}
    events_with_invalid_id_lengths: dict[str, list[int]] = {}
    silenced_events: list[int] = []
    throttled_devices: dict[str, Any] = {}
    throttled_users: dict[str, Any] = {}
    exceeded_daily_quota_devices: dict[str, Any] = {}
    exceeded_daily_quota_users: dict[str, Any] = {}


_error_decoder = msgspec.json.Decoder(ErrorBody)


def _error_body(body: bytes) -> ErrorBody:
    try:
        return _error_decoder.decode(body)
    except msgspec.DecodeError:
        return ErrorBody(error=body[:200].decode(errors="replace"))


def classify(status: int, body: bytes) -> Outcome:
    """What an Amplitude response means for the events it answered."""
    if 200 <= status < 300:
        return Ok()
    if status == 413:
        return TooLarge()
    if status == 400:
        err = _error_body(body)
        message = err.error or ""
        if "api key" in message.lower():
            return InvalidApiKey(message)
        invalid: dict[int, str] = {}
        for prefix, table in (
            ("invalid_field", err.events_with_invalid_fields),
            ("missing_field", err.events_with_missing_fields),
            ("invalid_id_length", err.events_with_invalid_id_lengths),
        ):
            for field, indexes in table.items():
                for index in indexes:
                    invalid.setdefault(index, f"{prefix}:{field}")
        for index in err.silenced_events:
            invalid.setdefault(index, "silenced")
        if invalid:
            return Rejected(invalid)
        if err.missing_field:
            return BadRequest(f"missing_field:{err.missing_field}")
        return BadRequest(f"bad_request:{message[:100]}" if message else "bad_request")
    if status == 429:
        err = _error_body(body)
        return Throttled(
            devices=frozenset(err.throttled_devices),
            users=frozenset(err.throttled_users),
            quota_devices=frozenset(err.exceeded_daily_quota_devices),
            quota_users=frozenset(err.exceeded_daily_quota_users),
        )
    if status in (401, 403):
        return InvalidApiKey(f"HTTP {status}")
    # 5xx: may or may not have been taken; insert_id makes a resend safe. Other
    # statuses are unexpected: retrying (loudly, by counter) is safer than dropping.
    return Retry(f"http_{status}")


# -- the sink (policy) ---------------------------------------------------------------------


class AmplitudeSink(HttpDeliverySink):
    """Batches to Amplitude's HTTP/Batch API; `send` returns once every event is settled."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"amplitude"})
    dead_letter_kind: ClassVar[str | None] = "event"

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        hmac_key: str,
        url: str,
        identify_url: str,
        deadletters: DeadLetters,
        max_batch_bytes: int = 900_000,
        max_retry_seconds: float = 3600.0,
        concurrency: int = 4,
        request_timeout_seconds: float = 30.0,
        backoff: Backoff | None = None,
        throttle_pause_seconds: float = 30.0,
        min_id_length: int | None = None,
        sleep: Sleep = sleep,
    ) -> None:
        super().__init__(
            name,
            deadletters=deadletters,
            concurrency=concurrency,
            request_timeout_seconds=request_timeout_seconds,
        )
        self.api_key = api_key
        self.key = hmac_key.encode()
        self.url = url
        self.identify_url = identify_url
        self.max_batch_bytes = max_batch_bytes
        self.max_retry_seconds = max_retry_seconds
        self.backoff = backoff or Backoff(0.5, 60.0)
        self.throttle_pause = throttle_pause_seconds
        self.sleep = sleep
        self._encoder = msgspec.json.Encoder()
        options = b""
        if min_id_length is not None:
            options = b',"options":' + self._encoder.encode({"min_id_length": min_id_length})
        self._head = b'{"api_key":' + self._encoder.encode(api_key) + b',"events":['
        self._tail = b"]" + options + b"}"
        self._requests = asyncio.Semaphore(concurrency)
        # Throttled device and user ids (as sent) -> loop time their pause ends.
        self._paused: dict[str, float] = {}
        self._key_ok = True

    async def healthy(self) -> bool:
        return self._key_ok

    # -- preparing a batch ----------------------------------------------------------------

    def prepare(
        self, records: Iterable[Record]
    ) -> tuple[list[Prepared], list[Identification], list[tuple[str, Any]]]:
        """(events to send, deduplicated identifications, refused (reason, record))."""
        events: list[Prepared] = []
        refused: list[tuple[str, Any]] = []
        identifies: dict[tuple[str | None, str | None, bytes], Identification] = {}
        split_memo: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        hashed: dict[str, str] = {}
        encode = self._encoder.encode
        for record in records:
            if not isinstance(record, AmplitudeEvent):
                refused.append(("not_an_amplitude_event", record))
                continue
            reason = refusal(record)
            if reason is not None:
                refused.append((reason, record))
                continue
            uid = record.user_id
            user_id = None
            if uid:
                user_id = hashed.get(uid)
                if user_id is None:
                    user_id = hashed[uid] = hash_id(self.key, uid)
            props = record.user_properties
            # The records of one request share one user_properties dict: split it once.
            split = split_memo.get(id(props))
            if split is None:
                split = split_memo[id(props)] = split_user_properties(props)
            plain, ops = split
            event = msgspec.structs.replace(
                record,
                user_id=user_id,
                user_properties=plain,
                insert_id=record.insert_id
                or insert_id(
                    self.key,
                    uid,
                    record.device_id,
                    record.session_id,
                    record.event_type,
                    record.time,
                ),
            )
            events.append(Prepared(event, encode(event), record))
            if ops:
                ident = (user_id, record.device_id, encode(ops))
                if ident not in identifies:
                    identifies[ident] = Identification(ops, user_id, record.device_id)
        return events, list(identifies.values()), refused

    def chunks(self, events: list[Prepared]) -> list[list[Prepared]]:
        """Split events so that each request body stays under `max_batch_bytes`."""
        room = self.max_batch_bytes - len(self._head) - len(self._tail)
        out: list[list[Prepared]] = []
        current: list[Prepared] = []
        size = 0
        for item in events:
            need = len(item.data) + 1
            if current and size + need > room:
                out.append(current)
                current, size = [], 0
            current.append(item)
            size += need
        if current:
            out.append(current)
        return out

    # -- sending --------------------------------------------------------------------------

    async def send(self, records: Sequence[Record]) -> None:
        events, identifications, refused = self.prepare(records)
        await self._dead_letter(refused)
        if identifications:
            await self._identify(identifications)
        if events:
            await asyncio.gather(*(self._deliver(chunk) for chunk in self.chunks(events)))

    async def _post(self, url: str, **kwargs: Any) -> tuple[int, bytes] | str:
        """(status, body), or the name of the transport failure."""
        assert self._session is not None, "sink not started"
        async with self._requests:
            try:
                async with self._session.post(url, **kwargs) as resp:
                    return resp.status, await resp.read()
            except TimeoutError:
                return "timeout"
            except aiohttp.ClientError as exc:
                return type(exc).__name__

    async def _request(self, events: list[Prepared]) -> Outcome:
        body = self._head + b",".join(item.data for item in events) + self._tail
        result = await self._post(self.url, data=body, headers={"Content-Type": "application/json"})
        if isinstance(result, str):
            return Retry(result)
        outcome = classify(*result)
        self._note_key(outcome)
        return outcome

    def _note_key(self, outcome: Outcome) -> None:
        if isinstance(outcome, InvalidApiKey):
            if self._key_ok:
                log.error(
                    "sink %s: Amplitude refuses the API key (%s); nothing is dropped, "
                    "retrying until max_retry_seconds",
                    self.name,
                    outcome.message,
                )
            self._key_ok = False
        elif not isinstance(outcome, Retry):
            self._key_ok = True

    def _hold_paused(self, events: list[Prepared]) -> tuple[list[Prepared], list[Prepared]]:
        """(events free to go, events whose device or user is paused by a 429)."""
        paused = self._paused
        if not paused:
            return events, []
        now = asyncio.get_running_loop().time()
        for key in [k for k, until in paused.items() if until <= now]:
            del paused[key]
        ready: list[Prepared] = []
        held: list[Prepared] = []
        for item in events:
            e = item.event
            if (e.device_id and e.device_id in paused) or (e.user_id and e.user_id in paused):
                held.append(item)
            else:
                ready.append(item)
        return ready, held

    async def _after_pause(self, held: list[Prepared]) -> None:
        loop = asyncio.get_running_loop()
        ids = [k for item in held for k in (item.event.device_id, item.event.user_id) if k]
        until = max((self._paused.get(k, 0.0) for k in ids), default=0.0)
        await self.sleep(max(until - loop.time(), 0.0))
        for k in ids:
            # Lift the pause we waited for, but not a newer one set meanwhile.
            if self._paused.get(k, until + 1) <= until:
                del self._paused[k]
        await self._deliver(held)

    async def _deliver(self, events: list[Prepared]) -> None:
        """Send one chunk until each of its events is delivered or dead-lettered."""
        later: list[asyncio.Task[None]] = []
        try:
            await self._deliver_chunk(events, later)
            if later:
                await asyncio.gather(*later)
        except BaseException:
            for task in later:
                task.cancel()
            raise

    async def _deliver_chunk(self, events: list[Prepared], later: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while events:
            events, held = self._hold_paused(events)
            if held:
                later.append(asyncio.create_task(self._after_pause(held)))
            if not events:
                return
            outcome = await self._request(events)
            match outcome:
                case Ok():
                    self._count("sink.sent", len(events))
                    return
                case Rejected(invalid=invalid) if any(0 <= i < len(events) for i in invalid):
                    bad = [
                        (r, events[i].source) for i, r in invalid.items() if 0 <= i < len(events)
                    ]
                    await self._dead_letter(bad)
                    events = [e for i, e in enumerate(events) if i not in invalid]
                    self._count("sink.retried", len(events), reason="partial_400")
                case Rejected() | BadRequest() | TooLarge():
                    reason = outcome.reason if isinstance(outcome, BadRequest) else "too_large"
                    if isinstance(outcome, Rejected):
                        reason = "bad_request:indexes_out_of_range"
                    if len(events) == 1:
                        await self._dead_letter([(reason, events[0].source)])
                        return
                    # Halving isolates the culprit (400) or fits the limit (413) in log2(n) steps.
                    half = len(events) // 2
                    self._count("sink.retried", len(events), reason=reason.split(":")[0])
                    await asyncio.gather(self._deliver(events[:half]), self._deliver(events[half:]))
                    return
                case Throttled() if (
                    outcome.devices or outcome.users or outcome.quota_devices or outcome.quota_users
                ):
                    quota = [
                        item
                        for item in events
                        if (item.event.device_id or "") in outcome.quota_devices
                        or (item.event.user_id or "") in outcome.quota_users
                    ]
                    if quota:
                        await self._dead_letter([("daily_quota", item.source) for item in quota])
                        gone = {id(item) for item in quota}
                        events = [item for item in events if id(item) not in gone]
                    until = loop.time() + self.throttle_pause
                    for key in outcome.devices | outcome.users:
                        self._paused[key] = until
                    self._count("sink.retried", len(events), reason="throttled")
                case _:
                    reason = (
                        outcome.reason
                        if isinstance(outcome, Retry)
                        else "invalid_api_key"
                        if isinstance(outcome, InvalidApiKey)
                        else "throttled"
                    )
                    attempt += 1
                    delay = self.backoff.delay(attempt)
                    if isinstance(outcome, Throttled):
                        delay = max(delay, self.throttle_pause)
                    if loop.time() - started + delay > self.max_retry_seconds:
                        await self._dead_letter(
                            [(f"gave_up:{reason}", item.source) for item in events]
                        )
                        return
                    self._count("sink.retried", len(events), reason=reason)
                    await self.sleep(delay)

    async def _identify(self, identifications: list[Identification]) -> None:
        """Send user-property operations before the events; failures are dead-lettered."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        form = {
            "api_key": self.api_key,
            "identification": self._encoder.encode(identifications).decode(),
        }
        while True:
            result = await self._post(self.identify_url, data=form)
            outcome = Retry(result) if isinstance(result, str) else classify(*result)
            self._note_key(outcome)
            match outcome:
                case Ok():
                    self._count("sink.identified", len(identifications))
                    return
                case Rejected() | BadRequest() | TooLarge():
                    reason = outcome.reason if isinstance(outcome, BadRequest) else "rejected"
                    await self._dead_letter(
                        [(f"identify_{reason}", i) for i in identifications], kind="identify"
                    )
                    return
                case _:
                    attempt += 1
                    delay = self.backoff.delay(attempt)
                    if isinstance(outcome, Throttled):
                        delay = max(delay, self.throttle_pause)
                    if loop.time() - started + delay > self.max_retry_seconds:
                        await self._dead_letter(
                            [("identify_gave_up", i) for i in identifications], kind="identify"
                        )
                        return
                    self._count("sink.retried", len(identifications), reason="identify")
                    await self.sleep(delay)
