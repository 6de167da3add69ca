"""The JetStream sink: publishes with deterministic ids, fails loudly without a bus."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from fakes.amplitude import FakeAmplitude
from router import bus
from router.errors import PublishError
from router.ids import insert_id, vwo_id
from router.records import Record
from router.sinks.jetstream import JetStreamSink

from ..support.bus import NatsServer, bus_conf
from ..support.delivery import HMAC_KEY, AiohttpServer, amplitude_sink, event
from ..support.destinations import ID_KEY
from .conftest import amplitude, stream_count, vwo


async def test_publish_uses_record_ids_and_drops_replays(nats_server: NatsServer) -> None:
    sink = JetStreamSink("jetstream", bus_conf(nats_server.url))
    records: list[Record] = [*map(amplitude, range(50)), *map(vwo, range(20))]
    async with sink:
        await sink.send(records)
        assert await stream_count(nats_server.url) == 70
        await sink.send(records)  # a replay from the spool
        assert sink.duplicates == 70
    assert await stream_count(nats_server.url) == 70

    nc = await nats.connect(nats_server.url)
    sub = await nc.jetstream().pull_subscribe("metrics.amplitude", durable="check")
    first = (await sub.fetch(1))[0]
    await nc.close()
    event = amplitude(0)
    expected = insert_id(ID_KEY.encode(), event.user_id, None, None, event.event_type, event.time)
    assert first.headers is not None and first.headers["Nats-Msg-Id"] == expected
    assert b"insert_id" in first.data and expected.encode() in first.data
    assert vwo_id(vwo(0)) != vwo_id(vwo(1))


async def test_message_id_is_the_insert_id_the_amplitude_sink_sends(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Same record, same key: JetStream's Nats-Msg-Id equals Amplitude's insert_id."""
    record = event()
    assert not record.insert_id
    publisher = JetStreamSink("jetstream", bus_conf("nats://127.0.0.1:1", id_key=HMAC_KEY))
    message = publisher._message(record)
    assert message is not None
    subject, payload, msg_id = message
    assert subject == "metrics.amplitude"

    fake = FakeAmplitude()
    server = await aiohttp_server(fake.app)
    async with amplitude_sink(server, tmp_path) as direct:
        await direct.send([record])  # the router posting straight to Amplitude
    async with amplitude_sink(server, tmp_path) as forwarded:
        await forwarded.send([bus.decode("amplitude", payload)])  # a forwarder's delivery
    sent = [e["insert_id"] for e in fake.received]
    assert sent == [msg_id, msg_id]
    assert len(fake.ingested) == 1

    # A different key gives different ids: the two keys must be configured equal.
    other = JetStreamSink("jetstream", bus_conf("nats://127.0.0.1:1", id_key="other"))
    other_message = other._message(record)
    assert other_message is not None and other_message[2] != msg_id


async def test_publish_fails_loudly_when_the_bus_is_gone(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "js")
    await server.start()
    sink = JetStreamSink(
        "jetstream",
        bus_conf(server.url, publish_timeout_seconds=0.5, publish_attempts=2),
    )
    await sink.start()
    await server.stop(kill=True)
    with pytest.raises(PublishError):
        await sink.send([amplitude(1)])
    assert not await sink.healthy()
    await server.start()
    await sink.send([amplitude(1)])  # reconnected: the same send now succeeds
    await sink.aclose()
    await server.stop()
