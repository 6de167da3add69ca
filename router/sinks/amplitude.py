"""Delivery to Amplitude's HTTP API: hashed ids, insert ids, Identify calls, per-event outcomes.

Three layers, read top to bottom: pure functions that prepare events (`hash_id` and
`insert_id`, shared with the JetStream sink in `router/ids.py`, and
`split_user_properties`); `classify`, which turns a response into an `Outcome` in
Amplitude's terms and `action`, which says what the retry engine does with it; and
`AmplitudeSink`, which prepares, posts and hands each batch to `RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import msgspec

from ..ids import hash_id, insert_id_prefix, insert_id_rest
from ..keyed import Keyed
from ..records import AmplitudeEvent, Record
from . import retry
from .base import Dropped, Kind
from .http import HttpDeliverySink
from .retry import Action, Backoff, RetryPolicy, Sleep, sleep

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


class Prepared(msgspec.Struct, gc=False):
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


def action(outcome: Outcome, events: Sequence[Prepared], throttle_pause: float) -> Action:
    """What the retry engine does with an answer to `events`."""
    match outcome:
        case Ok():
            return retry.Done()
        case Rejected(invalid=invalid) if any(0 <= i < len(events) for i in invalid):
            return retry.Partial(invalid, reason="partial_400")
        case Rejected():
            return retry.Split("bad_request:indexes_out_of_range")
        case BadRequest(reason=reason):
            return retry.Split(reason)
        case TooLarge():
            return retry.Split("too_large")
        case Throttled() if (
            outcome.devices or outcome.users or outcome.quota_devices or outcome.quota_users
        ):
            quota: dict[int, str] = {}
            hot: set[int] = set()
            for i, item in enumerate(events):
                device, user = item.event.device_id or "", item.event.user_id or ""
                if device in outcome.quota_devices or user in outcome.quota_users:
                    quota[i] = "daily_quota"
                elif device in outcome.devices or user in outcome.users:
                    hot.add(i)
            # The others are sent again at once; only the throttled ids wait out the pause.
            return retry.Partial(quota, frozenset(hot), throttle_pause, reason="throttled")
        case Throttled():
            return retry.Retry("throttled", pause=throttle_pause)
        case InvalidApiKey():
            return retry.Retry("invalid_api_key")
        case Retry(reason=reason):
            return retry.Retry(reason)
    raise AssertionError(outcome)


# -- the sink ------------------------------------------------------------------------------


def _source(item: Prepared) -> AmplitudeEvent:
    return item.source


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
            name, concurrency=concurrency, request_timeout_seconds=request_timeout_seconds
        )
        self.api_key = api_key
        self.key = hmac_key.encode()
        self._keyed = Keyed(self.key)
        self.url = url
        self.identify_url = identify_url
        self.max_batch_bytes = max_batch_bytes
        backoff = backoff or Backoff(0.5, 60.0)
        # The budget is counted in retries: as many as fit in max_retry_seconds of waiting.
        self.policy = RetryPolicy(backoff.retries_within(max_retry_seconds), backoff, sleep)
        self.throttle_pause = throttle_pause_seconds
        self._encoder = msgspec.json.Encoder()
        options = b""
        if min_id_length is not None:
            options = b',"options":' + self._encoder.encode({"min_id_length": min_id_length})
        self._head = b'{"api_key":' + self._encoder.encode(api_key) + b',"events":['
        self._tail = b"]" + options + b"}"
        self._key_ok = True

    async def healthy(self) -> bool:
        return self._key_ok

    # -- preparing a batch ----------------------------------------------------------------

    def prepare(
        self, records: Iterable[Record]
    ) -> tuple[list[Prepared], list[Identification], list[Dropped]]:
        """(events to send, deduplicated identifications, refused records)."""
        outgoing: list[AmplitudeEvent] = []
        sources: list[AmplitudeEvent] = []
        refused: list[Dropped] = []
        identifies: dict[tuple[str | None, str | None, bytes], Identification] = {}
        # The records of one request share their user_properties dict and their session:
        # each dict is split (and its operators encoded) once, each session's part of the
        # insert-id message hashed once.
        splits: dict[int, tuple[dict[str, Any], dict[str, Any], bytes | None]] = {}
        sessions: dict[tuple[str | None, str | None, int | None], Any] = {}
        hashed: dict[str, str] = {}
        keyed = self._keyed
        encode = self._encoder.encode
        for record in records:
            if not isinstance(record, AmplitudeEvent):
                refused.append(Dropped("not_an_amplitude_event", record))
                continue
            reason = refusal(record)
            if reason is not None:
                refused.append(Dropped(reason, record))
                continue
            uid = record.user_id
            user_id = None
            if uid:
                user_id = hashed.get(uid)
                if user_id is None:
                    user_id = hashed[uid] = hash_id(self.key, uid)
            props = record.user_properties
            split = splits.get(id(props))
            if split is None:
                plain, ops = split_user_properties(props)
                split = splits[id(props)] = (plain, ops, encode(ops) if ops else None)
            plain, ops, encoded_ops = split
            iid = record.insert_id
            if not iid:
                session = (uid, record.device_id, record.session_id)
                state = sessions.get(session)
                if state is None:
                    state = sessions[session] = keyed.start(insert_id_prefix(*session))
                iid = keyed.finish(state, insert_id_rest(record.event_type, record.time))
            outgoing.append(
                msgspec.structs.replace(
                    record, user_id=user_id, user_properties=plain, insert_id=iid
                )
            )
            sources.append(record)
            if encoded_ops is not None:
                ident = (user_id, record.device_id, encoded_ops)
                if ident not in identifies:
                    identifies[ident] = Identification(ops, user_id, record.device_id)
        # One encoder call for the batch; each event's JSON is its line (no raw newlines).
        lines = self._encoder.encode_lines(outgoing).split(b"\n")
        events = list(map(Prepared, outgoing, lines, sources))
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

    async def send(self, records: Sequence[Record]) -> list[Dropped]:
        events, identifications, dropped = self.prepare(records)
        if identifications:
            dropped += await self.policy.run(
                identifications, self._identify, kind="identify", on_retry=self._retried
            )
        if events:
            for part in await asyncio.gather(
                *(
                    self.policy.run(chunk, self._batch, letter=_source, on_retry=self._retried)
                    for chunk in self.chunks(events)
                )
            ):
                dropped += part
        return dropped

    async def _batch(self, events: list[Prepared]) -> Action:
        body = self._head + b",".join(item.data for item in events) + self._tail
        outcome = classify(
            *await self._post(self.url, data=body, headers={"Content-Type": "application/json"})
        )
        self._note_key(outcome)
        return action(outcome, events, self.throttle_pause)

    async def _identify(self, identifications: list[Identification]) -> Action:
        """User-property operations, sent before the events they came with."""
        form = {
            "api_key": self.api_key,
            "identification": self._encoder.encode(identifications).decode(),
        }
        outcome = classify(*await self._post(self.identify_url, data=form))
        self._note_key(outcome)
        match outcome:
            case Ok():
                self._count("sink.identified", len(identifications))
                return retry.Done()
            case Rejected() | BadRequest() | TooLarge():
                reason = outcome.reason if isinstance(outcome, BadRequest) else "rejected"
                return retry.Drop(f"identify_{reason}")
            case Throttled():
                return retry.Retry("identify", pause=self.throttle_pause)
            case _:
                return retry.Retry("identify")

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
