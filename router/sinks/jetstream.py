"""Publishing records to NATS JetStream, for delivery workers (`metrics-router forward`).

Every publish carries the record's deterministic id, so a batch resent after a failure
or replayed from the spool is stored once (within the stream's duplicate window).
Publishes are pipelined: the whole batch goes out, then the acknowledgements are
gathered; records whose publish failed are tried again by the retry engine, and if
they still fail `send` raises so the batch stays in the spool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import ClassVar

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from .. import bus
from ..config import JetStreamSinkSettings
from ..errors import PublishError
from ..ids import record_id, with_insert_id
from ..records import AmplitudeEvent, Record
from . import retry
from .base import Kind, Sink
from .retry import Action, Backoff, RetryPolicy

log = logging.getLogger(__name__)


# Publishes in flight at once: below nats-py's pending limit (4000), where publish_async
# would wait without a timeout for acks that a dropped connection never brings.
WINDOW = 2000


Message = tuple[str, bytes, str]


class JetStreamSink(Sink):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"amplitude", "vwo"})
    # Spooled by the dispatcher: a failed `send` leaves the chunk on disk for a retry.
    durable: ClassVar[bool] = True

    def __init__(self, name: str, conf: JetStreamSinkSettings) -> None:
        super().__init__(name)
        self.conf = conf
        self.key = conf.id_key.encode()
        self.duplicates = 0
        self.policy = RetryPolicy(conf.publish_attempts - 1, Backoff(0.2, 5.0))
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None

    async def start(self) -> None:
        self._nc = await bus.connect(self.conf, f"router-{self.name}")
        self._js = self._nc.jetstream(timeout=self.conf.publish_timeout_seconds)
        await bus.ensure_stream(self._js, self.conf)

    async def aclose(self) -> None:
        if self._nc is not None:
            await bus.close(self._nc)
        self._nc = self._js = None

    async def healthy(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _message(self, record: Record) -> Message | None:
        destination = bus.destination_of(record)
        subject = self.conf.subjects.get(destination) if destination else None
        if subject is None:
            return None
        if isinstance(record, AmplitudeEvent):
            # The forwarder's Amplitude sink keeps an insert_id it is given.
            record = with_insert_id(self.key, record)
        return subject, bus.encode(record), record_id(self.key, record)

    async def _publish(self, messages: list[Message]) -> list[int]:
        """Publish in windows that fit the client's pending-ack limit; failed indexes."""
        failed: list[int] = []
        for start in range(0, len(messages), WINDOW):
            window = messages[start : start + WINDOW]
            failed.extend(start + i for i in await self._publish_window(window))
        return failed

    async def _publish_window(self, messages: list[Message]) -> list[int]:
        """Publish all, then await all acks; the indexes of the ones that failed."""
        assert self._js is not None
        futures: list[asyncio.Future[PubAck]] = []
        failed: list[int] = []
        for i, (subject, payload, msg_id) in enumerate(messages):
            try:
                futures.append(
                    await self._js.publish_async(
                        subject,
                        payload,
                        headers={bus.MSG_ID: msg_id},
                    )
                )
            except (NatsError, OSError) as exc:
                log.warning("sink %s: publish failed: %r", self.name, exc)
                failed.extend(range(i, len(messages)))
                break
        if not futures:
            return failed
        _, pending = await asyncio.wait(futures, timeout=self.conf.publish_timeout_seconds)
        for future in pending:
            future.cancel()
        for i, future in enumerate(futures):
            if future in pending or future.exception() is not None:
                failed.append(i)
            elif future.result().duplicate:
                self.duplicates += 1
        return sorted(failed)

    def _retried(self, amount: int, reason: str) -> None:
        self.stats.incr("sink.retried", amount, {"sink": self.name, "reason": reason})

    async def _attempt(self, messages: list[Message]) -> Action:
        failed = await self._publish(messages)
        if not failed:
            return retry.Done()
        log.warning(
            "sink %s: %d of %d publishes not acknowledged", self.name, len(failed), len(messages)
        )
        # Resending the acknowledged ones is unnecessary; resending a failed one that
        # was in fact stored is harmless: its Nats-Msg-Id makes it a duplicate.
        return retry.Retry("not_acknowledged", only=tuple(failed))

    async def send(self, records: Sequence[Record]) -> None:
        messages = [m for m in map(self._message, records) if m is not None]
        lost = await self.policy.run(messages, self._attempt, on_retry=self._retried)
        if lost:
            # Not a drop: the batch stays buffered and is published again later.
            raise PublishError(f"{len(lost)} records not acknowledged by JetStream")
