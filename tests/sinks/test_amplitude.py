"""The Amplitude sink against a fake Amplitude on loopback, fault by fault."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes.amplitude import FakeAmplitude
from router.ids import hash_id, insert_id
from router.keyed import Keyed, hmac_hex
from router.sinks.amplitude import (
    BadRequest,
    InvalidApiKey,
    Ok,
    Rejected,
    Retry,
    Throttled,
    TooLarge,
    classify,
    refusal,
    split_user_properties,
)
from router.sinks.retry import Backoff
from router.stats import Stats

from ..support.delivery import (
    DEVICE,
    HMAC_KEY,
    UID,
    AiohttpServer,
    amplitude_sink,
    deliver,
    event,
    read_dead_letters,
)

KEY = HMAC_KEY.encode()

# -- pure parts ----------------------------------------------------------------------------


@given(key=st.binary(max_size=200), data=st.binary(max_size=300))
def test_hmac_hex_is_the_standard_hmac_for_every_key_length(key: bytes, data: bytes) -> None:
    # Keys longer than SHA-256's 64-byte block are hashed first (RFC 2104).
    assert hmac_hex(key, data) == hmac.new(key, data, hashlib.sha256).hexdigest()


@given(
    key=st.binary(max_size=200),
    prefix=st.binary(max_size=200),
    rests=st.lists(st.binary(max_size=100), max_size=4),
)
def test_keyed_prefix_states_give_the_standard_hmac(
    key: bytes, prefix: bytes, rests: list[bytes]
) -> None:
    # One prefix state serves many messages: finishing one must not change the state.
    keyed = Keyed(key)
    state = keyed.start(prefix)
    for rest in rests:
        expected = hmac.new(key, prefix + rest, hashlib.sha256).hexdigest()
        assert keyed.finish(state, rest) == expected


def test_hash_id_is_hex_hmac_sha256() -> None:
    expected = hmac.new(KEY, UID.encode(), hashlib.sha256).hexdigest()
    assert hash_id(KEY, UID) == expected
    assert hash_id(b"other", UID) != expected


def test_insert_id_is_stable_and_covers_every_field() -> None:
    base = (UID, DEVICE, 5, "fxa_login - view", 1000)
    first = insert_id(KEY, *base)
    assert first == insert_id(KEY, *base)
    assert len(first) == 64
    variants = [
        (None, DEVICE, 5, "fxa_login - view", 1000),
        (UID, None, 5, "fxa_login - view", 1000),
        (UID, DEVICE, None, "fxa_login - view", 1000),
        (UID, DEVICE, 5, "fxa_login - submit", 1000),
        (UID, DEVICE, 5, "fxa_login - view", 1001),
    ]
    ids = {insert_id(KEY, *v) for v in variants}
    assert first not in ids and len(ids) == len(variants)
    # Field boundaries matter: ("ab", "c") is not ("a", "bc").
    assert insert_id(KEY, "ab", "c", None, "t", 1) != insert_id(KEY, "a", "bc", None, "t", 1)


def test_split_user_properties() -> None:
    plain, ops = split_user_properties({"a": 1, "$append": {"x": "y"}, "$set": {"b": 2}})
    assert plain == {"a": 1}
    assert ops == {"$append": {"x": "y"}, "$set": {"b": 2}}


def test_refusal_reasons() -> None:
    assert refusal(event()) is None
    assert refusal(event(event_type="")) == "missing_event_type"
    assert refusal(event(device_id=None, user_id=None)) == "missing_id"
    assert refusal(event(time=0)) == "bad_time"
    assert refusal(event(user_id=None)) is None


def test_classify() -> None:
    assert classify(200, b"{}") == Ok()
    assert classify(413, b"") == TooLarge()
    assert classify(503, b"") == Retry("http_503")
    assert classify(400, b'{"code":400,"error":"Invalid API key: x"}') == InvalidApiKey(
        "Invalid API key: x"
    )
    body = (
        b'{"code":400,"error":"bad","events_with_invalid_fields":{"time":[2]},'
        b'"events_with_missing_fields":{"event_type":[0,2]},"silenced_events":[5]}'
    )
    assert classify(400, body) == Rejected(
        {0: "missing_field:event_type", 2: "invalid_field:time", 5: "silenced"}
    ) or classify(400, body) == Rejected(
        {2: "invalid_field:time", 0: "missing_field:event_type", 5: "silenced"}
    )
    assert classify(400, b'{"code":400,"missing_field":"api_key"}') == BadRequest(
        "missing_field:api_key"
    )
    assert classify(400, b"not json") == BadRequest("bad_request:not json")
    throttled = classify(
        429,
        b'{"throttled_devices":{"d1":31},"throttled_users":{"u1":31},'
        b'"exceeded_daily_quota_devices":{"d2":1}}',
    )
    assert throttled == Throttled(
        frozenset({"d1"}), frozenset({"u1"}), frozenset({"d2"}), frozenset()
    )


# -- against the fake ------------------------------------------------------------------------


async def test_delivers_hashed_ids_and_insert_ids(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeAmplitude()
    server = await aiohttp_server(fake.app)
    stats = Stats()
    async with amplitude_sink(server, tmp_path) as sink:
        sink.stats = stats
        await deliver(sink, tmp_path, [event(), event(device_id=None), event(user_id=None)])
    assert len(fake.ingested) == 3
    first, no_device, no_user = fake.received
    assert first["user_id"] == hash_id(KEY, UID)
    assert first["insert_id"] == insert_id(
        KEY, UID, DEVICE, 1_699_999_990_000, first["event_type"], first["time"]
    )
    assert "device_id" not in no_device
    assert "user_id" not in no_user
    assert stats.get("sink.sent", sink="amplitude") == 3


async def test_retries_never_count_twice(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    # The first request is taken but answered 500; then a reset and a 503.
    fake = FakeAmplitude(faults=["ingest_then_500", "reset", 503, 502])
    server = await aiohttp_server(fake.app)
    stats = Stats()
    records = [event(time=1_700_000_000_000 + i) for i in range(20)]
    async with amplitude_sink(server, tmp_path) as sink:
        sink.stats = stats
        await deliver(sink, tmp_path, records)
    assert len(fake.received) == 40  # everything arrived twice...
    assert len(fake.ingested) == 20  # ...and counts once, thanks to insert_id
    assert stats.get("sink.sent", sink="amplitude") == 20
    assert stats.total("sink.retried") == 20 * 4
    assert not (tmp_path / "dead.jsonl").exists()


async def test_400_drops_only_the_listed_events(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeAmplitude(reject={"bad - one": ("event_properties", "invalid")})
    server = await aiohttp_server(fake.app)
    stats = Stats()
    records = [event(time=1_700_000_000_000 + i) for i in range(6)]
    records[1] = event(event_type="bad - one", time=1)
    records[4] = event(event_type="bad - one", time=2)
    async with amplitude_sink(server, tmp_path) as sink:
        sink.stats = stats
        await deliver(sink, tmp_path, records)
    assert fake.statuses == [400, 200]
    assert sorted(e["time"] for e in fake.ingested.values()) == [
        1_700_000_000_000 + i for i in (0, 2, 3, 5)
    ]
    dead = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert [(d.reason, d.record["time"]) for d in dead] == [
        ("invalid_field:event_properties", 1),
        ("invalid_field:event_properties", 2),
    ]
    assert dead[0].destination == "amplitude"
    # Kept as the pipeline made it, so `dlq replay` hashes it exactly once, like the first time.
    assert dead[0].record["user_id"] == UID and "insert_id" not in dead[0].record
    assert (
        stats.get(
            "sink.dead_lettered",
            sink="amplitude",
            reason="invalid_field:event_properties",
            kind="event",
        )
        == 2
    )


async def test_413_splits_until_it_fits(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    fake = FakeAmplitude(max_bytes=2500)
    server = await aiohttp_server(fake.app)
    records = [event(time=1_700_000_000_000 + i) for i in range(40)]
    async with amplitude_sink(server, tmp_path) as sink:
        await deliver(sink, tmp_path, records)
    assert len(fake.ingested) == 40
    assert 413 in fake.statuses
    assert all(len(r) <= 10 for r in fake.requests)


async def test_413_on_one_event_is_dead_lettered(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeAmplitude(max_bytes=700)
    server = await aiohttp_server(fake.app)
    big = event(event_properties={"blob": "x" * 1000})
    async with amplitude_sink(server, tmp_path) as sink:
        await deliver(sink, tmp_path, [event(), big])
    assert len(fake.ingested) == 1
    (dead,) = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert dead.reason == "too_large"


async def test_byte_limit_splits_before_sending(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeAmplitude(max_bytes=3000)
    server = await aiohttp_server(fake.app)
    records = [event(time=1_700_000_000_000 + i) for i in range(40)]
    async with amplitude_sink(server, tmp_path, max_batch_bytes=3000) as sink:
        await deliver(sink, tmp_path, records)
    assert 413 not in fake.statuses
    assert len(fake.ingested) == 40 and len(fake.requests) > 1


async def test_429_pauses_only_the_throttled_ids(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    hot, cold, quota = "hot-device-000000", "cold-device-00000", "quota-device-0000"
    fake = FakeAmplitude(throttle_devices={hot}, quota_devices={quota})
    server = await aiohttp_server(fake.app)
    records = [
        event(device_id=d, user_id=None, time=1_700_000_000_000 + i)
        for i, d in enumerate([hot, cold, quota, cold, hot])
    ]
    async with amplitude_sink(server, tmp_path) as sink:
        await deliver(sink, tmp_path, records)
    assert fake.statuses == [429, 200, 200]
    throttled, first, second = fake.requests
    assert len(throttled) == 5
    assert {e["device_id"] for e in first} == {cold}  # resent at once, without the hot device
    assert {e["device_id"] for e in second} == {hot}  # after its pause
    assert len(fake.ingested) == 4
    (dead,) = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert (dead.reason, dead.record["device_id"]) == ("daily_quota", quota)


async def test_invalid_api_key_is_loud_and_nothing_is_lost(
    aiohttp_server: AiohttpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeAmplitude()
    server = await aiohttp_server(fake.app)
    stats = Stats()
    async with amplitude_sink(
        server,
        tmp_path,
        api_key="wrong",
        max_retry_seconds=0.03,
        backoff=Backoff(0.01, 0.01, rng=lambda: 1.0),
    ) as sink:
        sink.stats = stats
        with caplog.at_level(logging.ERROR):
            await deliver(sink, tmp_path, [event(), event(time=5)])
        assert not await sink.healthy()
    assert any("refuses the API key" in r.message for r in caplog.records)
    assert fake.ingested == {}
    assert stats.total("sink.retried") >= 2
    dead = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert [d.reason for d in dead] == ["gave_up:invalid_api_key"] * 2


async def test_5xx_until_max_retry_then_dead_letter(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeAmplitude(faults=[500] * 1000)
    server = await aiohttp_server(fake.app)
    stats = Stats()
    async with amplitude_sink(
        server, tmp_path, max_retry_seconds=0.03, backoff=Backoff(0.01, 0.01, rng=lambda: 1.0)
    ) as sink:
        sink.stats = stats
        await deliver(sink, tmp_path, [event()])
    assert 2 <= len(fake.statuses) < 10
    (dead,) = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert dead.reason == "gave_up:http_500"
    assert (
        stats.get("sink.dead_lettered", sink="amplitude", reason="gave_up:http_500", kind="event")
        == 1
    )


async def test_refused_events_are_counted_and_dead_lettered(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeAmplitude()
    server = await aiohttp_server(fake.app)
    stats = Stats()
    async with amplitude_sink(server, tmp_path) as sink:
        sink.stats = stats
        await deliver(
            sink, tmp_path, [event(user_id=None, device_id=None), event(time=-1), event()]
        )
    assert len(fake.ingested) == 1
    dead = read_dead_letters(str(tmp_path / "dead.jsonl"))
    assert sorted(d.reason for d in dead) == ["bad_time", "missing_id"]
    assert stats.get("sink.dead_lettered", sink="amplitude", reason="missing_id", kind="event") == 1


async def test_identify_first_and_deduplicated_per_user(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = FakeAmplitude()
    server = await aiohttp_server(fake.app)
    props = {"entrypoint": "firstrun", "$append": {"fxa_services_used": "sync"}}
    other = {"$append": {"fxa_services_used": "monitor"}}
    records = [event(time=1_700_000_000_000 + i, user_properties=props) for i in range(5)] + [
        event(time=1_700_000_000_100, user_properties=other)
    ]
    async with amplitude_sink(server, tmp_path) as sink:
        await deliver(sink, tmp_path, records)
    assert fake.order == ["identify", "events"]
    assert fake.identifications == [
        {
            "user_id": hash_id(KEY, UID),
            "device_id": DEVICE,
            "user_properties": {"$append": {"fxa_services_used": "sync"}},
        },
        {
            "user_id": hash_id(KEY, UID),
            "device_id": DEVICE,
            "user_properties": {"$append": {"fxa_services_used": "monitor"}},
        },
    ]
    # Events keep only plain properties: Amplitude refuses a mix with operators.
    assert fake.received[0]["user_properties"] == {"entrypoint": "firstrun"}
    assert "user_properties" not in fake.received[5]
