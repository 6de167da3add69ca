"""The delivery bench scenario runs and reports a positive rate for each sink."""

from __future__ import annotations

from bench.delivery import run


def test_delivery_bench_smoke() -> None:
    result = run(0.3)
    assert set(result) == {"amplitude_events_per_s", "vwo_events_per_s"}
    assert all(rate > 0 for rate in result.values())
