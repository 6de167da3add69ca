"""Deterministic ids for outgoing records, so that a resent record is recognised as one.

The same record always gets the same id: JetStream drops a republished message by its
`Nats-Msg-Id` within its duplicate window, and Amplitude drops an event by `insert_id`
for seven days.
"""

from __future__ import annotations

import hashlib

import msgspec

from .keyed import hmac_hex
from .records import AmplitudeEvent, FlowEvent, Record, VwoConversion


def hash_id(key: bytes, value: str) -> str:
    """Hex HMAC-SHA256 of an id: what leaves the router instead of the raw uid."""
    return hmac_hex(key, value.encode())


def insert_id(
    key: bytes,
    user_id: str | None,
    device_id: str | None,
    session_id: int | None,
    event_type: str,
    time: int,
) -> str:
    """A stable id for one Amplitude event (its `insert_id`).

    Fields are joined with NUL so that ("ab", "c") and ("a", "bc") differ; the raw
    user id is used, so the id does not change if the hashing of user ids does.
    """
    message = insert_id_prefix(user_id, device_id, session_id) + insert_id_rest(event_type, time)
    return hmac_hex(key, message)


def insert_id_prefix(user_id: str | None, device_id: str | None, session_id: int | None) -> bytes:
    """The start of an insert id's message: the same for every event of one session."""
    session = "" if session_id is None else str(session_id)
    return f"{user_id or ''}\0{device_id or ''}\0{session}\0".encode()


def insert_id_rest(event_type: str, time: int) -> bytes:
    return f"{event_type}\0{time}".encode()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def vwo_id(record: VwoConversion) -> str:
    """A VWO conversion is one metric, one user, one moment."""
    return _digest("vwo", record.name, record.user_id, str(record.time))


def flow_id(record: FlowEvent) -> str:
    return _digest("flow", record.flow_id, record.event, str(record.time))


def with_insert_id(key: bytes, record: AmplitudeEvent) -> AmplitudeEvent:
    """The event with its insert_id filled in (the record itself when it has one)."""
    if record.insert_id:
        return record
    return msgspec.structs.replace(
        record,
        insert_id=insert_id(
            key,
            record.user_id,
            record.device_id,
            record.session_id,
            record.event_type,
            record.time,
        ),
    )


def record_id(key: bytes, record: Record) -> str:
    """The message id of any record (Amplitude events must already carry an insert_id)."""
    if isinstance(record, AmplitudeEvent):
        return record.insert_id or with_insert_id(key, record).insert_id or ""
    if isinstance(record, VwoConversion):
        return vwo_id(record)
    if isinstance(record, FlowEvent):
        return flow_id(record)
    raise TypeError(f"{type(record).__name__} records carry no message id")
