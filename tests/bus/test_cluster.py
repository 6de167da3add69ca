"""A three-node JetStream cluster, stream replicas 3: losing a node loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from router.bus.forward import Forwarder
from router.dispatch.deadletter import DeadLetters
from router.records import AmplitudeEvent, Record, VwoConversion
from router.sinks.jetstream import JetStreamSink

from ..support.bus import NatsCluster, bus_conf
from ..support.delivery import AiohttpServer
from ..support.destinations import DedupDestination, HttpPostSink

RECORDS = 400
BATCH = 20
KILL_AFTER = 160  # records acknowledged before one server is killed


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    async with NatsCluster(tmp_path / "nats") as nodes:
        yield nodes


def record(i: int) -> Record:
    if i % 4 == 3:
        return VwoConversion(name="signup", user_id=f"user-{i}", time=1_700_000_000_000 + i)
    return AmplitudeEvent(
        event_type="fxa_reg - view", time=1_700_000_000_000 + i, user_id=f"{i:032x}"
    )


async def stream_leader(url: str) -> tuple[str, int]:
    """The stream's leader and how many servers hold it."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("METRICS")
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader is not None
    return info.cluster.leader, 1 + len(info.cluster.replicas or ())


async def test_killing_a_node_of_a_three_node_cluster_loses_nothing(
    cluster: NatsCluster, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    dest = DedupDestination()
    url = str((await aiohttp_server(dest.app)).make_url("/events"))
    conf = bus_conf(*cluster.urls, replicas=3, publish_timeout_seconds=2.0, publish_attempts=10)
    halfway = asyncio.Event()

    async def publish(sink: JetStreamSink) -> None:
        for start in range(0, RECORDS, BATCH):
            await sink.send([record(i) for i in range(start, start + BATCH)])
            if start + BATCH == KILL_AFTER:
                halfway.set()

    async with JetStreamSink("jetstream", conf) as sink:
        leader, holders = await stream_leader(cluster.urls[0])
        assert holders == 3
        publisher = asyncio.create_task(publish(sink))
        waiter = asyncio.create_task(halfway.wait())
        async with asyncio.timeout(15):
            await asyncio.wait({publisher, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        assert halfway.is_set() and not publisher.done(), publisher
        # The stream's leader goes: the two others elect one and publishing goes on.
        killed = cluster.server(leader)
        await killed.stop(kill=True)
        # Electing a new stream leader takes nats-server's raft election timeout (4-9 s).
        async with asyncio.timeout(30):
            await publisher
    assert sink.duplicates <= BATCH * 2

    alive = [server.url for server in cluster.servers if server is not killed]
    new_leader, _ = await stream_leader(alive[0])
    assert new_leader != leader
    # Creating the forwarder's consumer needs a JetStream meta leader: if the killed server
    # was it, the others elect one within their raft election timeout.
    await cluster.wait_formed(lost=killed)
    stop = asyncio.Event()
    # The forwarder is configured with all three servers, the dead one included, and the
    # default JetStream API timeout (10 s): creating its R3 consumer with a peer down can
    # take longer than the 2 s the publisher above uses.
    forwarder = Forwarder(
        bus_conf(*cluster.urls, replicas=3),
        "amplitude",
        HttpPostSink("amplitude", url),
        deadletters=DeadLetters(tmp_path / "dead.db"),
    )
    task = asyncio.create_task(forwarder.run(stop))
    try:
        await dest.wait_for(RECORDS)
    finally:
        stop.set()
        await task
    assert sorted(r["time"] for r in dest.received.values()) == [
        1_700_000_000_000 + i for i in range(RECORDS)
    ]
