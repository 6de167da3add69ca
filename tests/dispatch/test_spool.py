"""The spool behind a durable sink: write-behind, spill, replay, strict mode, backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from blockbuster import BlockBuster

from router.app import make_app
from router.config import Settings, override
from router.dispatch import SinkRunner, SpoolBuffer
from router.dispatch.deadletter import DeadLetters
from router.dispatch.spool import STATEMENT_ROWS, Spool, statement_slices
from router.dispatch.spooled import SPILL_BACKLOG_BYTES
from router.errors import PublishError
from router.records import FlowEvent, Record, decode_batch, encode_batch
from router.ruletable import RuleTable
from router.sinks.memory import MemorySink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import AiohttpClient
from ..support.bodies import body
from ..support.spool_sinks import GatedSink, events, times


def runner_for(
    sink: GatedSink,
    path: Path,
    stats: Stats | None = None,
    *,
    commit_interval_ms: int = 60_000,
    memory_records: int = 10_000,
    strict: bool = False,
    max_bytes: int = 1 << 30,
    deadletters: DeadLetters | None = None,
) -> SinkRunner:
    stats = stats or Stats()
    buffer = SpoolBuffer(
        sink.name,
        stats,
        Spool(path / f"{sink.name}.db", max_bytes=max_bytes),
        batch_size=10,
        commit_interval_ms=commit_interval_ms,
        memory_records=memory_records,
        strict=strict,
    )
    return SinkRunner(sink, stats, buffer, deadletters)


def spooled(runner: SinkRunner) -> SpoolBuffer:
    assert isinstance(runner.buffer, SpoolBuffer)
    return runner.buffer


async def drain(runner: SinkRunner) -> None:
    async with asyncio.timeout(10):
        await runner.flush()


async def checkpoint(runner: SinkRunner) -> None:
    async with asyncio.timeout(10):
        await spooled(runner).checkpoint()


async def started(runner: SinkRunner) -> SinkRunner:
    await runner.open()
    await runner.sink.start()
    runner.start()
    return runner


async def test_spool_commit_read_delete_and_reopen(
    tmp_path: Path, blockbuster: BlockBuster
) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=10_000)
    await spool.open()
    blobs = [encode_batch(events(i * 3, 3)) for i in range(4)]
    ids, gone = await spool.commit([(blobs[0], False), (blobs[1], True), (blobs[2], False)], ())
    assert gone == 0 and len(ids) == 3
    assert [i for i, _ in await spool.read(10, spilled_only=True)] == [ids[1]]
    ids4, gone = await spool.commit([(blobs[3], True)], [ids[0]])
    assert gone == 1 and spool.rows == 3
    assert spool.size_bytes == sum(len(b) for b in blobs[1:])
    await spool.close()
    # After a restart every row is the only copy, in order.
    again = Spool(tmp_path / "s.db", max_bytes=10_000)
    await again.open()
    rows = await again.read(10, spilled_only=True)
    assert [i for i, _ in rows] == [ids[1], ids[2], ids4[0]]
    assert times(decode_batch(rows[0][1])) == [3, 4, 5]
    assert again.rows == 3 and again.size_bytes == spool.size_bytes
    await again.close()


def test_statement_slices_cover_every_row_in_a_few_sizes() -> None:
    for count in [*range(700), 1000, 4096, 12_345]:
        slices = statement_slices(count)
        assert [i for start, end in slices for i in range(start, end)] == list(range(count))
        assert {end - start for start, end in slices} <= set(STATEMENT_ROWS)
        # Greedy, largest first: at most three of any size below the largest.
        sizes = [end - start for start, end in slices]
        assert all(sizes.count(size) <= 3 for size in STATEMENT_ROWS[1:])


async def test_rounds_of_any_size_use_a_few_statements(tmp_path: Path) -> None:
    # sqlite3 keeps a prepared statement per SQL text; one per row count held hundreds of
    # MB while a destination was down (rounds of every size between 1 and 1,000 rows).
    spool = Spool(tmp_path / "s.db", max_bytes=1 << 30)
    await spool.open()
    texts: set[str] = set()
    assert spool._db is not None
    spool._db.set_trace_callback(texts.add)
    blob = encode_batch(events(0, 1))
    written: list[int] = []
    for count in (1, 2, 3, 7, 30, 99, 255, 256, 257, 500, 999, 1000, 1001):
        ids, _ = await spool.commit([(blob, True)] * count, written[: count // 2])
        assert len(ids) == count and ids == sorted(ids) and len(set(ids)) == count
        del written[: count // 2]
        written.extend(ids)
    assert spool.rows == len(written)
    rows = await spool.read(5000, spilled_only=True)
    assert [i for i, _ in rows] == written
    # The trace shows each statement with its values: the rows it took, by its shape.
    sizes = {t.count("),(") + 1 for t in texts if t.startswith("INSERT")}
    sizes |= {t[t.index(" IN (") :].count(",") + 1 for t in texts if " IN (" in t}
    assert sizes == set(STATEMENT_ROWS)
    await spool.close()


async def test_write_behind_skips_what_was_delivered(tmp_path: Path) -> None:
    sink = GatedSink()
    stats = Stats()
    runner = await started(runner_for(sink, tmp_path, stats))
    for i in range(20):
        runner.submit(events(i * 5, 5))
    await drain(runner)
    await checkpoint(runner)
    assert spooled(runner).spool is not None and spooled(runner).spool.rows == 0
    assert stats.get("spool.written", sink="gated") == 0
    assert times(sink.records) == list(range(100))
    await runner.close(1.0)


async def test_undelivered_chunks_are_written_then_deleted(tmp_path: Path) -> None:
    sink = GatedSink(up=False)
    stats = Stats()
    runner = await started(runner_for(sink, tmp_path, stats))
    for i in range(6):
        runner.submit(events(i * 5, 5))
    await checkpoint(runner)
    assert spooled(runner).spool is not None and spooled(runner).spool.rows == 6
    sink.up.set()
    await drain(runner)
    await checkpoint(runner)
    assert spooled(runner).spool.rows == 0 and spooled(runner).spool.size_bytes == 0
    assert stats.get("spool.written", sink="gated") == 6
    assert stats.get("spool.deleted", sink="gated") == 6
    assert times(sink.records) == list(range(30))
    await runner.close(1.0)


async def test_spill_bounds_memory_and_keeps_order(tmp_path: Path) -> None:
    sink = GatedSink(up=False)
    stats = Stats()
    runner = await started(runner_for(sink, tmp_path, stats, memory_records=50))
    highest = 0
    for i in range(100):
        runner.submit(events(i * 5, 5))
        highest = max(highest, runner.buffer.queued)
    await checkpoint(runner)
    # 50 records in memory, one batch taken by the stuck send; the rest is on disk only.
    assert highest <= 50
    assert spooled(runner).spool is not None and spooled(runner).spool.rows == 100
    assert stats.get("spool.written", sink="gated") == 100
    sink.up.set()
    for i in range(100, 110):  # new work while the backlog drains goes behind it
        runner.submit(events(i * 5, 5))
    await drain(runner)
    assert times(sink.records) == list(range(550))
    assert stats.get("spool.replayed", sink="gated") == 100
    await checkpoint(runner)
    assert spooled(runner).spool.rows == 0
    await runner.close(1.0)


class CountingSpool(Spool):
    """A real spool that counts its commit rounds and says when one ended."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, max_bytes=1 << 30)
        self.rounds: list[int] = []  # chunks written by each round
        self.committed = asyncio.Event()

    async def commit(
        self, chunks: Sequence[tuple[bytes, bool]], delete: Iterable[int]
    ) -> tuple[list[int], int]:
        done = await super().commit(chunks, delete)
        self.rounds.append(len(chunks))
        self.committed.set()
        return done


def counting_runner(tmp_path: Path, spool: Spool) -> SinkRunner:
    buffer = SpoolBuffer(
        "gated", Stats(), spool, batch_size=10, commit_interval_ms=60_000, memory_records=10
    )
    return SinkRunner(GatedSink(up=False), Stats(), buffer)


async def test_spilled_chunks_are_group_committed(tmp_path: Path) -> None:
    # A destination that is down spills every request's chunk: one transaction per
    # interval for all of them, not one per request (the loop paid a thread hop each).
    spool = CountingSpool(tmp_path / "gated.db")
    runner = await started(counting_runner(tmp_path, spool))
    for i in range(60):
        runner.submit(events(i * 2, 2))
        await asyncio.sleep(0)  # the commit loop may run between requests
    assert spool.rounds == []  # the interval (a minute) has not passed
    await checkpoint(runner)
    assert spool.rounds == [60]
    assert spool.rows == 60
    await runner.close(1.0)


async def test_a_large_spill_backlog_is_written_at_once(tmp_path: Path) -> None:
    # Past a quarter of the backlog bound, the spill does not wait for the interval.
    spool = CountingSpool(tmp_path / "gated.db")
    runner = await started(counting_runner(tmp_path, spool))
    big = [FlowEvent(event="e", flow_id="f" * 32, flow_time=0, time=0, userAgent="u" * 1000)]
    sent = 0
    while sent < 1000:  # ~100 KB a chunk: a quarter of the bound is ~40 chunks
        runner.submit(big * 100)
        sent += 1
        if spooled(runner)._spill_bytes >= SPILL_BACKLOG_BYTES // 4:
            break
    assert spooled(runner)._spill_bytes >= SPILL_BACKLOG_BYTES // 4, "the chunks never spilled"
    async with asyncio.timeout(10):
        await spool.committed.wait()
    assert spool.rounds and sum(spool.rounds) == sent
    await runner.close(1.0)


async def test_restart_replays_before_new_work(tmp_path: Path) -> None:
    down = GatedSink(up=False)
    first = await started(runner_for(down, tmp_path, memory_records=20))
    for i in range(10):
        first.submit(events(i * 4, 4))
    await down.sending.wait()
    # The destination stays down past the deadline: the send is cancelled, nothing is lost.
    await first.close(0.05)
    assert spooled(first).spool is not None and spooled(first).spool.rows == 10

    up = GatedSink()
    second = runner_for(up, tmp_path)
    await second.open()
    second.submit(events(1000, 3))  # accepted before the workers run: still after the backlog
    await up.start()
    second.start()
    await drain(second)
    assert times(up.records) == [*range(40), 1000, 1001, 1002]
    await second.close(1.0)
    assert spooled(second).spool is not None and spooled(second).spool.rows == 0


async def test_sigterm_deadline_spools_what_was_not_written(tmp_path: Path) -> None:
    sink = GatedSink(up=False)
    runner = await started(runner_for(sink, tmp_path))
    for i in range(5):
        runner.submit(events(i * 2, 2))
    await sink.sending.wait()
    # Nothing committed yet (the interval is a minute): close must write it all.
    assert spooled(runner).spool is not None and spooled(runner).spool.rows == 0
    await runner.close(0.05)
    spool = Spool(tmp_path / "gated.db", max_bytes=1 << 20)
    await spool.open()
    rows = await spool.read(100, spilled_only=True)
    assert [t for _, blob in rows for t in times(decode_batch(blob))] == list(range(10))
    await spool.close()


async def test_strict_submit_resolves_once_on_disk(tmp_path: Path) -> None:
    sink = GatedSink(up=False)
    runner = await started(runner_for(sink, tmp_path, strict=True))
    waiter = runner.submit(events(0, 3))
    assert waiter is not None
    await waiter
    assert spooled(runner).spool is not None and spooled(runner).spool.rows == 1
    sink.up.set()
    await drain(runner)
    await runner.close(1.0)


async def test_gave_up_records_become_dead_letters(tmp_path: Path) -> None:
    sink = GatedSink()
    sink.fail_next = 1
    stats = Stats()
    store = DeadLetters(tmp_path / "dlq.db", stats)
    runner = await started(runner_for(sink, tmp_path, stats, deadletters=store))
    runner.submit(events(0, 4))
    runner.submit(events(4, 4))
    await drain(runner)
    letters = await store.list()
    # Both chunks went in one batch, which the sink gave up on.
    assert [(letter.destination, letter.reason) for letter in letters] == [
        ("gated", "sink_error")
    ] * 8
    assert sink.records == []
    assert letters[0].detail == "RuntimeError: destination refused the batch"
    first = letters[0].to_record()
    assert isinstance(first, FlowEvent) and first.time == 0
    assert stats.get("dlq.added", destination="gated", reason="sink_error") == len(letters)
    recovered = [letter.to_record() for letter in letters]
    assert [r.time for r in recovered if isinstance(r, FlowEvent)] == list(range(8))
    await checkpoint(runner)
    assert spooled(runner).spool is not None and spooled(runner).spool.rows == 0
    await runner.close(1.0)
    await store.close()


@pytest.fixture
def spool_settings(settings: Settings, tmp_path: Path) -> Settings:
    return override(settings, spool={"path": str(tmp_path / "spool")})


async def test_spool_full_answers_503_then_recovers(
    aiohttp_client: AiohttpClient, spool_settings: Settings, rules: RuleTable, stats: Stats
) -> None:
    spool_settings = override(
        spool_settings, spool={"max_bytes": 4096, "memory_records": 10, "retry_after_seconds": 7}
    )
    sink = GatedSink(up=False)
    app = make_app(spool_settings, rules=rules, sinks=[sink], stats=stats)
    client = await aiohttp_client(app)
    runner = app[DISPATCHER].runners[0]
    statuses: list[int] = []
    for i in range(500):
        resp = await client.post("/metrics", json=body([("flow.signin.engage", i)]))
        statuses.append(resp.status)
        if resp.status == 503:
            assert resp.headers["Retry-After"] == "7"
            assert (await resp.json())["message"] == "spool full: try again later"
            break
        assert resp.status == 200
        await checkpoint(runner)
    assert statuses[-1] == 503, "the spool never filled"
    accepted = len(statuses) - 1
    assert (
        stats.get("request.rejected", endpoint="/metrics", reason="spool_full", status="503") == 1
    )
    flow_503 = await client.get("/metrics-flow", params={"entrypoint": "x"})
    assert flow_503.status == 503
    sink.up.set()
    await drain(runner)
    await checkpoint(runner)
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 1)]))
    assert resp.status == 200
    await drain(runner)
    # Every accepted request's records arrived: one flow event and one amplitude event each.
    assert len(sink.flow) == len(sink.amplitude) == accepted + 1


async def test_strict_mode_answers_after_commit(
    aiohttp_client: AiohttpClient, spool_settings: Settings, rules: RuleTable, stats: Stats
) -> None:
    spool_settings = override(spool_settings, spool={"strict": True})
    sink = GatedSink(up=False)
    app = make_app(spool_settings, rules=rules, sinks=[sink], stats=stats)
    client = await aiohttp_client(app)
    runner = app[DISPATCHER].runners[0]
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 1)]))
    assert resp.status == 200
    # The 200 came after the commit, although the commit interval is 200 ms: it is on disk.
    assert spooled(runner).spool is not None and spooled(runner).spool.rows == 1
    sink.up.set()
    await drain(runner)
    assert len(sink.flow) == 1 and len(sink.amplitude) == 1


class BusDown(GatedSink):
    """A durable sink whose bus refuses the first `down` sends as JetStream's sink does."""

    def __init__(self, down: int) -> None:
        super().__init__("jetstream")
        self.down = down

    async def send(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        if self.down:
            self.down -= 1
            raise PublishError(f"{len(records)} records not acknowledged by JetStream")
        await MemorySink.send(self, records)


async def test_a_bus_outage_keeps_batches_spooled_not_dead_lettered(tmp_path: Path) -> None:
    # JetStreamSink.send raises PublishError for a bus that is down: the batch must stay in
    # the spool and be published once the bus is back, never dead-lettered.
    stats = Stats()
    store = DeadLetters(tmp_path / "dead.db", stats)
    sink = BusDown(down=5)
    runner = runner_for(sink, tmp_path, stats, deadletters=store)
    runner.retry_seconds = 0.001
    await runner.open()
    runner.start()
    for i in range(4):
        runner.submit(events(i * 5, 5))
    async with asyncio.timeout(10):
        await runner.flush()
    await runner.close(5.0)
    assert sink.attempts > 5
    assert times(sink.records) == list(range(20))
    assert await store.list() == []
    assert stats.total("sink.dead_lettered") == 0
    await store.close()
