"""Delivery workers: pull records from JetStream and deliver them through a sink.

`metrics-router forward --destination NAME` runs one. Several forwarders of one
destination share one durable pull consumer (`forward-<NAME>`), so JetStream spreads
the messages between them. A forwarder is a `SinkRunner` whose buffer is the consumer
(`BusBuffer`: take = fetch, ack = ack, keep = nak), so it shares the router's loop and
failure path (`Delivery`): a message is acknowledged only once its record is delivered
or dead-lettered, and is redelivered if a forwarder dies holding it; a failed send naks
the batch with a delay; a message that cannot be decoded, or that failed `max_deliver`
times, is written to the dead-letter store and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from .. import bus
from ..config import JetStreamSinkSettings, Settings, deadletter_path
from ..dispatch.buffer import SourceBuffer, Ticket
from ..dispatch.deadletter import DeadLetters
from ..dispatch.runner import Delivery, SinkRunner
from ..errors import ConfigError, DeadLetterError
from ..records import Record
from ..sinks import FACTORIES, Sink, SinkFactory
from ..sinks.base import Dropped
from ..sinks.retry import Backoff
from ..stats import Stats, exporting

log = logging.getLogger(__name__)

# How long a stopping forwarder may take to finish the batch in hand.
FINISH_SECONDS = 3600.0


def build_destination(
    settings: Settings,
    name: str,
    deadletters: DeadLetters | None = None,
    factories: Mapping[str, SinkFactory] = FACTORIES,
) -> Sink:
    """The sink named `name`, from its `[sinks.<name>]` section, through `factories`."""
    if name not in factories:
        known = ", ".join(sorted(n for n in factories if n != "jetstream"))
        raise ConfigError([f"forward: unknown destination {name!r} (known: {known})"])
    conf = getattr(settings.sinks, name, None)
    if conf is None:
        raise ConfigError([f"forward: destination {name!r} needs a [sinks.{name}] section"])
    store = deadletters or DeadLetters(deadletter_path(settings))
    return factories[name](name, conf, settings, store)


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
        # The live connection, for the Dockerflow heartbeat (handlers/forwarder.py).
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None

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
        nc = self.nc = await bus.connect(self.conf, f"forward-{self.destination}")
        try:
            js = self.js = nc.jetstream(timeout=self.conf.publish_timeout_seconds)
            sub = await self._bind(js, stop)
            if sub is None:
                return
            runner = SinkRunner(self.sink, self.stats, BusBuffer(self, sub), self.deadletters)
            await self.sink.start()
            try:
                log.info(
                    "forwarder %s ready: consumer %s on stream %s (%s)",
                    self.destination,
                    self.durable,
                    self.conf.stream,
                    ", ".join(sorted(self.kinds)),
                )
                if ready is not None:
                    ready.set()
                runner.start()
                await stop.wait()
            finally:
                # The batch in hand is finished (acked or naked) before the sink closes.
                await runner.close(FINISH_SECONDS)
        finally:
            self.nc = self.js = None
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

    async def decode(self, msgs: Sequence[Msg]) -> tuple[list[Record], list[Msg]]:
        """The records of a fetched batch and their messages; the others are dead-lettered."""
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
        return records, held

    async def acked(self, msgs: Sequence[Msg]) -> None:
        for msg in msgs:
            await msg.ack()
        self.stats.incr("forward.delivered", len(msgs), self._tags)

    async def retry_later(self, msgs: Sequence[Msg], reason: str) -> None:
        """Nak for a later delivery, or dead-letter what was on its last one."""
        last = self.conf.max_deliver
        final = [m for m in msgs if last and m.metadata.num_delivered >= last]
        again = [m for m in msgs if not (last and m.metadata.num_delivered >= last)]
        for msg in again:
            await msg.nak(delay=self.conf.retry_delay_seconds)
        if again:
            self.stats.incr("forward.retried", len(again), self._tags)
        if final:
            await self.dead_letter(final, f"delivery failed {last} times: {reason}")

    async def keep_alive(self, msgs: Sequence[Msg]) -> None:
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


class BusTicket(Ticket):
    """A fetched batch: its records, and the messages to ack or nak."""

    __slots__ = ("msgs", "keepalive")

    def __init__(self, records: list[Record], msgs: list[Msg], keepalive: asyncio.Task[None]):
        super().__init__(records, [])
        self.msgs = msgs
        self.keepalive = keepalive


class BusBuffer(SourceBuffer):
    """The JetStream consumer as the runner's buffer: take = fetch, ack = ack, keep = nak.

    What it keeps is redelivered after `retry_delay_seconds`, or dead-lettered on its
    last delivery (`max_deliver`).
    """

    def __init__(self, forwarder: Forwarder, sub: object) -> None:
        super().__init__()
        self.forwarder = forwarder
        self.fetch = sub.fetch  # type: ignore[attr-defined]

    async def take(self) -> Ticket | None:
        fwd = self.forwarder
        while not self.closing:
            try:
                msgs: list[Msg] = await self.fetch(fwd.conf.fetch_batch, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                # An empty pull: the normal state of an idle forwarder, not a failure.
                fwd.stats.incr("forward.empty_pulls", 1, {"destination": fwd.destination})
                continue
            except (NatsError, OSError) as exc:
                log.warning("forward %s: fetch failed: %r", fwd.destination, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), 1.0)
                continue
            records, held = await fwd.decode(msgs)
            if held:
                return BusTicket(records, held, asyncio.create_task(fwd.keep_alive(held)))
        return None

    def ack(self, ticket: Ticket) -> None:
        assert isinstance(ticket, BusTicket)
        ticket.keepalive.cancel()
        self._later(self.forwarder.acked(ticket.msgs))

    def keep(self, ticket: Ticket, error: Exception | None = None) -> None:
        assert isinstance(ticket, BusTicket)
        ticket.keepalive.cancel()
        self._later(self.forwarder.retry_later(ticket.msgs, repr(error)))


def forward(
    settings: Settings, destination: str, factories: Mapping[str, SinkFactory] = FACTORIES
) -> None:
    """`metrics-router forward`: run one delivery worker until SIGTERM/SIGINT."""
    from ..server import new_event_loop

    conf = bus_settings(settings)
    # One Stats for the forwarder, its sink and its dead letters, exported like serve's.
    stats = Stats(settings.stats.default_sample_rate)
    store = DeadLetters(deadletter_path(settings), stats)
    sink = build_destination(settings, destination, store, factories)
    sink.stats = stats
    forwarder = Forwarder(conf, destination, sink, stats, deadletters=store)

    async def main() -> None:
        from ..handlers.forwarder import serve_dockerflow

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with (
            exporting(stats, settings.stats.statsd, settings.stats.prefix),
            serve_dockerflow(forwarder, settings),
        ):
            try:
                await forwarder.run(stop)
            finally:
                await store.close()
        log.info("forwarder %s stopped", destination)

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
