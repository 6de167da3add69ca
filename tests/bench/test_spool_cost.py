"""The spool-cost bench runs and reports every mode."""

from __future__ import annotations

import asyncio

import pytest

from bench.spool_cost import MODES, run


@pytest.mark.slow
async def test_spool_cost_reports_each_mode() -> None:
    results = await asyncio.to_thread(run, 0.3)
    assert set(results) == set(MODES)
    assert all(r["requests_per_s"] > 0 and r["events_per_s"] > 0 for r in results.values())
