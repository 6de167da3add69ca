"""The NATS JetStream bus between routers and delivery workers: connection, stream, wire format.

One message per record, on the subject of its destination (`[sinks.jetstream]
subjects`), with the record's deterministic id as `Nats-Msg-Id`. The body is the
records batch codec (`router/records.py`) with one record, the same bytes a spool row holds.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from ..config import JetStreamSinkSettings
from ..records import TYPES, Record, decode_batch, encode_batch, kind_of

log = logging.getLogger(__name__)

# The kinds that travel on the bus (flow events are written by each router's log sink).
Destination = Literal["amplitude", "vwo"]

MSG_ID = "Nats-Msg-Id"

# Messages published before the bus used the batch codec: the bare record.
_bare: dict[str, msgspec.msgpack.Decoder[Any]] = {
    kind: msgspec.msgpack.Decoder(tp) for kind, tp in TYPES.items()
}


def encode(record: Record) -> bytes:
    return encode_batch([record])


def decode(destination: Destination, payload: bytes) -> Record:
    """The record of a message body; raises msgspec.DecodeError / ValidationError."""
    try:
        records = decode_batch(payload)
    except msgspec.ValidationError:
        record: Record = _bare[destination].decode(payload)
        return record
    if len(records) != 1 or kind_of(records[0]) != destination:
        raise msgspec.ValidationError(f"expected one {destination} record")
    return records[0]


def destination_of(record: Record) -> Destination | None:
    kind = kind_of(record)
    return kind if kind == "amplitude" or kind == "vwo" else None


async def connect(conf: JetStreamSinkSettings, name: str) -> NATS:
    """A connection that reconnects for ever (a bus outage must not end the process)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)

    async def on_disconnect() -> None:
        log.warning("nats %s: disconnected", name)

    async def on_reconnect() -> None:
        log.info("nats %s: reconnected", name)

    return await nats.connect(
        servers=conf.servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


async def ensure_stream(js: JetStreamContext, conf: JetStreamSinkSettings) -> None:
    """Create the stream, or add our subjects to an existing one."""
    wanted = sorted(set(conf.subjects.values()))
    config = StreamConfig(
        name=conf.stream,
        subjects=wanted,
        storage=StorageType.FILE,
        num_replicas=conf.replicas,
        duplicate_window=conf.duplicate_window_seconds,
    )
    try:
        info = await js.stream_info(conf.stream)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("jetstream: created stream %s for %s", conf.stream, ", ".join(wanted))
            return
        except BadRequestError:
            # Another router or forwarder created it meanwhile.
            info = await js.stream_info(conf.stream)
    have = set(info.config.subjects or ())
    if not set(wanted) <= have:
        info.config.subjects = sorted(have | set(wanted))
        await js.update_stream(info.config)
        log.info("jetstream: stream %s now also takes %s", conf.stream, ", ".join(wanted))


async def close(nc: NATS) -> None:
    """Flush what is buffered (acks, publishes) when connected, then close.

    Not `drain`: a drained pull subscription waits out its fetch requests.
    """
    if nc.is_closed:
        return
    if nc.is_connected:
        try:
            await nc.flush(timeout=5)
        except (NatsError, OSError) as exc:
            log.warning("nats: flush before close failed: %r", exc)
    await nc.close()
