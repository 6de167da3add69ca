"""The record kinds and the one batch codec (spool rows, bus messages)."""

from __future__ import annotations

import msgspec
import pytest

from router import bus
from router.records import (
    AmplitudeEvent,
    FlowEvent,
    Record,
    VwoConversion,
    decode_batch,
    encode_batch,
    kind_of,
)

AMP = AmplitudeEvent(event_type="fxa_login - complete", time=1, user_id="u")
FLOW = FlowEvent(event="flow.begin", flow_id="f" * 32, flow_time=0, time=2)
VWO = VwoConversion(name="signin_complete", user_id="u", time=3)


def test_round_trip_keeps_order_across_kinds() -> None:
    records: list[Record] = [AMP, AMP, FLOW, VWO, AMP]
    assert decode_batch(encode_batch(records)) == records


def test_empty_batch() -> None:
    assert decode_batch(encode_batch([])) == []


def test_the_tag_is_on_the_run_not_on_the_wire_structs() -> None:
    assert b"amplitude" not in msgspec.json.encode(AMP)
    assert msgspec.msgpack.decode(encode_batch([AMP]))[0][0] == "amplitude"


def test_rows_written_before_the_tagged_runs_still_decode() -> None:
    legacy = msgspec.msgpack.encode([[AMP], [FLOW], [VWO]])
    assert decode_batch(legacy) == [AMP, FLOW, VWO]


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_batch([{"not": "a record"}])  # type: ignore[list-item]
    with pytest.raises(msgspec.DecodeError):
        decode_batch(b"\xc1")


def test_kinds() -> None:
    assert [kind_of(r) for r in (AMP, FLOW, VWO, object())] == ["amplitude", "flow", "vwo", None]


def test_bus_messages_use_the_codec_and_read_old_ones() -> None:
    assert bus.encode(VWO) == encode_batch([VWO])
    assert bus.decode("vwo", bus.encode(VWO)) == VWO
    assert bus.decode("amplitude", msgspec.msgpack.encode(AMP)) == AMP  # a bare record
    with pytest.raises(msgspec.ValidationError):
        bus.decode("vwo", bus.encode(AMP))
