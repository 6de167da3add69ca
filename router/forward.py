"""Delivery workers: pull records from JetStream and deliver them through a sink.

`metrics-router forward --destination NAME` runs one. Several forwarders of one
destination share one durable pull consumer (`forward-<NAME>`), so JetStream spreads
the messages between them; a message is acknowledged only after the sink's `send`
returned (delivered, or dead-lettered by the sink itself), and is redelivered if a
forwarder dies holding it. Sending goes through the runner's `Delivery` (the one
failure path: counts, dead-letters what the sink dropped); a failed send naks the
batch with a delay; a message that cannot be decoded, or that failed `max_deliver`
times, is written to the dead-letter store and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from . import bus
from .config import JetStreamSinkSettings, Settings, deadletter_path
from .deadletter import DeadLetters
from .dispatch.runner import Delivery
from .errors import ConfigError, DeadLetterError
from .records import Record
from .sinks import FACTORIES, Sink
from .sinks.base import Dropped
from .sinks.retry import Backoff
from .stats import Stats

log = logging.getLogger(__name__)


def build_destination(
    settings: Settings, name: str, deadletters: DeadLetters | None = None
) -> Sink:
    """The sink named `name`, from its `[sinks.<name>]` section, through FACTORIES."""
    if name not in FACTORIES:
        known = ", ".join(sorted(n for n in FACTORIES if n != "jetstream"))
        raise ConfigError([f"forward: unknown destination {name!r} (known: {known})"])
    conf = getattr(settings.sinks, name, None)
    if conf is None:
        raise ConfigError([f"forward: destination {name!r} needs a [sinks.{name}] section"])
    store = deadletters or DeadLetters(deadletter_path(settings))
    return FACTORIES[name](name, conf, settings, store)


def bus_settings(settings: Settings) -> JetStreamSinkSettings:
    conf = settings.sinks.jetstream
    if conf is None:
        raise ConfigError(["forward: a [sinks.jetstream] section is required"])
    return conf


class Undecodable(msgspec.Struct):
    """A dead-lettered message that is not a record: kept as it came (data in base64)."""

    subject: str
    id: str | None
    data: bytes


class Forwarder:
    """One destination's pull loop(s) over a shared durable consumer."""

    def __init__(
        self,
        conf: JetStreamSinkSettings,
        destination: str,
        sink: Sink,
        stats: Stats | None = None,
        *,
        deadletters: DeadLetters,
    ) -> None:
        self.conf = conf
        self.destination = destination
        self.sink = sink
        self.stats = stats or Stats()
        sink.stats = self.stats
        self.deadletters = deadletters
        self.delivery = Delivery(sink, self.stats, deadletters)
        self._key = conf.id_key.encode()
        self.durable = f"forward-{destination}"
        # subject -> destination kind, for the kinds this sink takes.
        self.kinds: dict[str, bus.Destination] = {
            subject: kind for kind, subject in conf.subjects.items() if kind in sink.kinds
        }
        if not self.kinds:
            raise ConfigError(
                [f"forward: sink {destination!r} takes none of {sorted(conf.subjects)}"]
            )
        self._tags = {"destination": destination}

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.conf.ack_wait_seconds,
            max_deliver=self.conf.max_deliver or -1,
            filter_subjects=sorted(self.kinds),
            max_ack_pending=-1,
        )

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Deliver until `stop` is set; the batch in hand is finished first."""
        nc = await bus.connect(self.conf, f"forward-{self.destination}")
        try:
            js = nc.jetstream(timeout=self.conf.publish_timeout_seconds)
            sub = await self._bind(js, stop)
            if sub is None:
                return
            async with self.sink:
                log.info(
                    "forwarder %s ready: consumer %s on stream %s (%s)",
                    self.destination,
                    self.durable,
                    self.conf.stream,
                    ", ".join(sorted(self.kinds)),
                )
                if ready is not None:
                    ready.set()
                loops = [
                    asyncio.create_task(self._loop(sub, stop))
                    for _ in range(max(1, self.sink.concurrency))
                ]
                await asyncio.gather(*loops)
        finally:
            await bus.close(nc)

    async def _bind(self, js: Any, stop: asyncio.Event) -> object | None:
        """Stream, consumer and subscription; retried while the bus cannot answer.

        A forwarder that starts during a leader election (or while a node is down) waits
        for the cluster instead of exiting. None when `stop` is set first.
        """
        backoff = Backoff(0.2, 5.0)
        attempt = 0
        while not stop.is_set():
            try:
                await bus.ensure_stream(js, self.conf)
                try:
                    await js.add_consumer(self.conf.stream, self.consumer_config())
                except BadRequestError as exc:
                    # Exists with other settings (e.g. another ack_wait): use it as it is.
                    log.warning("forward %s: keeping existing consumer: %s", self.destination, exc)
                sub: object = await js.pull_subscribe_bind(self.durable, self.conf.stream)
                return sub
            except (NatsTimeout, NatsError, OSError) as exc:
                attempt += 1
                delay = backoff.delay(attempt)
                log.warning(
                    "forward %s: stream/consumer not ready (%r); again in %.1f s",
                    self.destination,
                    exc,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        return None

    async def _loop(self, sub: object, stop: asyncio.Event) -> None:
        fetch = sub.fetch  # type: ignore[attr-defined]
        while not stop.is_set():
            try:
                msgs: list[Msg] = await fetch(self.conf.fetch_batch, timeout=1.0)
            except NatsTimeout:
                continue
            except (NatsError, OSError) as exc:
                log.warning("forward %s: fetch failed: %r", self.destination, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            await self.handle(msgs)

    async def handle(self, msgs: Sequence[Msg]) -> None:
        """Deliver one fetched batch, then ack, nak or dead-letter each message."""
        records: list[Record] = []
        held: list[Msg] = []
        for msg in msgs:
            kind = self.kinds.get(msg.subject)
            try:
                if kind is None:
                    raise ValueError(f"subject {msg.subject} is not for this destination")
                records.append(bus.decode(kind, msg.data))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                await self.dead_letter([msg], f"undecodable: {exc}")
                continue
            held.append(msg)
        if not held:
            return
        keepalive = asyncio.create_task(self._keep_alive(held))
        try:
            error = await self.delivery.send(records)
        finally:
            keepalive.cancel()
        if error is not None:
            await self._retry_later(held, repr(error))
            return
        for msg in held:
            await msg.ack()
        self.stats.incr("forward.delivered", len(held), self._tags)

    async def _retry_later(self, msgs: Sequence[Msg], reason: str) -> None:
        last = self.conf.max_deliver
        final = [m for m in msgs if last and m.metadata.num_delivered >= last]
        again = [m for m in msgs if not (last and m.metadata.num_delivered >= last)]
        for msg in again:
            await msg.nak(delay=self.conf.retry_delay_seconds)
        if again:
            self.stats.incr("forward.retried", len(again), self._tags)
        if final:
            await self.dead_letter(final, f"delivery failed {last} times: {reason}")

    async def _keep_alive(self, msgs: Sequence[Msg]) -> None:
        # A slow delivery (destination backing off) must not let ack_wait expire and
        # hand the same messages to another forwarder meanwhile.
        while True:
            await asyncio.sleep(self.conf.ack_wait_seconds / 3)
            for msg in msgs:
                with contextlib.suppress(NatsError):
                    await msg.in_progress()

    async def dead_letter(self, msgs: Sequence[Msg], reason: str) -> None:
        """Give up on messages: written to the dead-letter store, counted, then terminated.

        Written before `term`: if the write fails, the messages are naked and come
        back later rather than being lost.
        """
        try:
            await self.delivery.dead_letter([Dropped(reason, self._letter(m)) for m in msgs])
        except DeadLetterError:
            self.stats.incr("forward.dead_letter_failed", len(msgs), self._tags)
            for msg in msgs:
                await msg.nak(delay=self.conf.retry_delay_seconds)
            return
        self.stats.incr("forward.dead_lettered", len(msgs), {**self._tags, "reason": reason[:60]})
        for msg in msgs:
            await msg.term()

    def _letter(self, msg: Msg) -> Any:
        """What the dead letter keeps of a message: its record, or the message as it came."""
        kind = self.kinds.get(msg.subject)
        try:
            if kind is None:
                raise ValueError(msg.subject)
            record = bus.decode(kind, msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            return Undecodable(msg.subject, (msg.headers or {}).get(bus.MSG_ID), msg.data)
        # Kept as published (the pipeline's form, like every dead letter), so that
        # `dlq replay` sends it through the destination sink exactly as the first time.
        return record


def forward(settings: Settings, destination: str) -> None:
    """`metrics-router forward`: run one delivery worker until SIGTERM/SIGINT."""
    from .server import new_event_loop

    conf = bus_settings(settings)
    store = DeadLetters(deadletter_path(settings))
    sink = build_destination(settings, destination, store)
    forwarder = Forwarder(conf, destination, sink, deadletters=store)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await forwarder.run(stop)
        log.info("forwarder %s stopped", destination)

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
