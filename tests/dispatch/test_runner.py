"""The buffers and the runner's one loop (take → send → ack) and one failure path."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from router.dispatch import MemoryBuffer, SinkRunner, SpoolBuffer
from router.dispatch.deadletter import DeadLetters
from router.dispatch.spool import Spool
from router.records import FlowEvent, Record
from router.sinks.base import Dropped, Kind, Sink
from router.stats import Stats

from ..support.spool_sinks import GatedSink, VolatileGatedSink, events, times


class Picky(Sink):
    """Drops every record with an odd time, delivers the rest."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"flow"})
    durable: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__("picky")
        self.delivered: list[Record] = []

    async def send(self, records: Sequence[Record]) -> list[Dropped]:
        flows = [r for r in records if isinstance(r, FlowEvent)]
        self.delivered.extend(r for r in flows if r.time % 2 == 0)
        return [Dropped("odd", r) for r in flows if r.time % 2]


class Forgetful(Sink):
    """Delivers, then hangs before returning: the process dies between send and ack."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"flow"})
    durable: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__("gated")
        self.delivered: list[Record] = []
        self.sent = asyncio.Event()

    async def send(self, records: Sequence[Record]) -> None:
        self.delivered.extend(records)
        self.sent.set()
        await asyncio.Event().wait()


def spool_buffer(name: str, tmp_path: Path, stats: Stats) -> SpoolBuffer:
    return SpoolBuffer(
        name, stats, Spool(tmp_path / f"{name}.db", max_bytes=1 << 20), commit_interval_ms=60_000
    )


async def running(runner: SinkRunner) -> SinkRunner:
    await runner.open()
    await runner.sink.start()
    runner.start()
    return runner


async def flushed(runner: SinkRunner) -> None:
    async with asyncio.timeout(10):
        await runner.flush()


# -- buffers ---------------------------------------------------------------------------------


async def test_memory_buffer_cuts_batches_across_chunks_and_bounds_itself() -> None:
    stats = Stats()
    buffer = MemoryBuffer("m", stats, queue_size=10, batch_size=4)
    assert buffer.put([]) is None and buffer.queued == 0  # an empty batch is nothing
    buffer.put(events(0, 3))
    buffer.put(events(3, 3))
    assert buffer.refusal is None
    buffer.put(events(6, 6))  # two over the bound
    assert stats.get("sink.dropped", sink="m", reason="queue_full") == 2
    assert buffer.queued == 10 and buffer.refusal == "sink_busy"
    first = await buffer.take()
    assert first is not None and times(first.records) == [0, 1, 2, 3]
    second = await buffer.take()
    assert second is not None and times(second.records) == [4, 5, 6, 7]
    buffer.ack(first)
    buffer.keep(second)
    assert buffer.in_flight == 0 and buffer.queued == 2
    buffer.stop()
    last = await buffer.take()
    assert last is not None and times(last.records) == [8, 9]
    buffer.ack(last)
    assert await buffer.take() is None  # stopped and empty


async def test_memory_buffer_shares_chunks_between_puts_up_to_a_batch() -> None:
    buffer = MemoryBuffer("m", Stats(), queue_size=100, batch_size=4)
    given = events(0, 2)
    buffer.put(given)
    buffer.put(events(2, 1))
    buffer.put(events(3, 1))  # fills the first chunk to a batch
    buffer.put(events(4, 3))  # a new chunk
    assert [chunk.size for chunk in buffer.queue] == [4, 3]
    assert times(given) == [0, 1]  # the caller's list is not the chunk's
    first = await buffer.take()
    assert first is not None and times(first.records) == [0, 1, 2, 3]
    buffer.put(events(7, 2))  # 3 + 2 is over a batch: a chunk of its own
    second = await buffer.take()
    assert second is not None and times(second.records) == [4, 5, 6, 7]
    assert buffer.queue[0].taken == 1
    buffer.put(events(9, 1))  # a partly taken chunk gets no more records
    assert [chunk.size for chunk in buffer.queue] == [2, 1]
    third = await buffer.take()
    assert third is not None and times(third.records) == [8, 9]
    for ticket in (first, second, third):
        buffer.ack(ticket)
    assert buffer.queued == 0 and buffer.in_flight == 0 and not buffer.queue


async def test_spool_buffer_keeps_what_was_kept_for_the_next_start(tmp_path: Path) -> None:
    stats = Stats()
    buffer = spool_buffer("s", tmp_path, stats)
    await buffer.open()
    buffer.start()
    assert buffer.put([]) is None
    buffer.put(events(0, 2))
    buffer.put(events(2, 2))
    ticket = await buffer.take()
    assert ticket is not None and times(ticket.records) == [0, 1, 2, 3]
    buffer.keep(ticket)  # neither delivered nor dead-lettered
    await buffer.checkpoint()
    assert buffer.spool.rows == 2
    buffer.stop()
    await buffer.close(1.0)
    again = spool_buffer("s", tmp_path, stats)
    await again.open()
    again.start()
    ticket = await again.take()
    assert ticket is not None and times(ticket.records) == [0, 1, 2, 3]
    again.ack(ticket)
    await again.checkpoint()
    assert again.spool.rows == 0
    again.stop()
    await again.close(1.0)


# -- the runner ------------------------------------------------------------------------------


async def test_partial_drop_is_counted_and_dead_lettered_once(tmp_path: Path) -> None:
    stats = Stats()
    sink = Picky()
    store = DeadLetters(tmp_path / "dlq.db", stats)
    runner = await running(SinkRunner(sink, stats, spool_buffer("picky", tmp_path, stats), store))
    runner.submit(events(0, 6))
    await flushed(runner)
    assert times(sink.delivered) == [0, 2, 4]
    assert stats.get("sink.sent", sink="picky") == 3
    assert stats.get("sink.dead_lettered", sink="picky", reason="odd") == 3
    letters = await store.list()
    assert [(d.destination, d.reason) for d in letters] == [("picky", "odd")] * 3
    await runner.close(1.0)
    await store.close()


async def test_volatile_sink_failure_is_counted_and_the_runner_goes_on() -> None:
    stats = Stats()
    sink = VolatileGatedSink("volatile")
    sink.fail_next = 1
    runner = await running(SinkRunner(sink, stats, MemoryBuffer("volatile", stats, batch_size=2)))
    runner.submit(events(0, 2))
    runner.submit(events(2, 2))
    await flushed(runner)
    assert stats.get("sink.failed", sink="volatile", reason="error") == 2
    assert times(sink.records) == [2, 3]
    await runner.close(1.0)


async def test_crash_between_send_and_ack_sends_again_after_restart(tmp_path: Path) -> None:
    stats = Stats()
    sink = Forgetful()
    runner = await running(SinkRunner(sink, stats, spool_buffer("gated", tmp_path, stats)))
    runner.submit(events(0, 3))
    await sink.sent.wait()
    await runner.close(0.05)  # the deadline cancels the send that never returned
    assert times(sink.delivered) == [0, 1, 2]

    again = GatedSink()
    second = await running(SinkRunner(again, stats, spool_buffer("gated", tmp_path, stats)))
    await flushed(second)
    # At least once: the destination sees the batch twice and deduplicates it by id.
    assert times(again.records) == [0, 1, 2]
    await second.close(1.0)
    spool = Spool(tmp_path / "gated.db", max_bytes=1 << 20)
    await spool.open()
    assert spool.rows == 0
    await spool.close()


async def test_unwritable_dead_letter_store_keeps_the_batch_in_the_spool(tmp_path: Path) -> None:
    stats = Stats()
    sink = GatedSink()
    sink.fail_next = 1
    (tmp_path / "dlq.db").mkdir()  # not a database: every write fails
    store = DeadLetters(tmp_path / "dlq.db", stats)
    runner = await running(SinkRunner(sink, stats, spool_buffer("gated", tmp_path, stats), store))
    runner.submit(events(0, 2))
    await flushed(runner)
    assert sink.records == [] and stats.total("sink.dead_lettered") == 0
    await runner.close(1.0)
    spool = Spool(tmp_path / "gated.db", max_bytes=1 << 20)
    await spool.open()
    assert spool.rows == 1  # sent again at the next start
    await spool.close()
