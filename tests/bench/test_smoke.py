"""A small run of the bench so it cannot rot: no figures are judged here."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from aiohttp.test_utils import TestServer

from bench.loadgen import Load
from bench.results import Report, format_table
from bench.runner import targets
from bench.scenarios import pipeline, rules, sinks
from router.app import make_app
from router.config import Settings
from router.ruletable import RuleTable
from router.sinks.memory import MemorySink
from router.stats import Stats

from ..support.programs import program_or_skip

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_scenario_counts_events_and_records(rules: RuleTable) -> None:
    row = pipeline.measure(rules, 0.2, "smoke")
    assert row.events and row.events % pipeline.EVENTS == 0
    assert row.events_per_s and row.records_per_s
    # The journey maps most events: more records than events come out.
    assert row.records_per_s > row.events_per_s


def test_pipeline_stages_split_a_request(rules: RuleTable) -> None:
    for events in (1, pipeline.EVENTS):
        rows = pipeline.stages(rules, events, 0.05)
        assert [r.label.split(",")[0] for r in rows] == [
            "stage: decode and checks",
            "stage: process_batch",
            "stage: log sink encode",
        ]
        for row in rows:
            assert row.cpu_us_per_event and row.cpu_us_per_event > 0
            # Both are rounded to 3 decimals: the per-event figure's rounding, times `events`.
            assert row.cpu_us_per_request == pytest.approx(
                row.cpu_us_per_event * events, abs=0.0005 * events + 0.0005
            )


def test_rules_scenario_tables_map_the_same_traffic() -> None:
    small, large = rules.table(10), rules.table(1000)
    assert (small.fuzzy_count, large.fuzzy_count) == (10, 1000)
    for name in rules.names():
        a, b = small.match(name), large.match(name)
        assert a is not None and b is not None
        assert a.event_type == b.event_type
    assert rules.uncached(large, 0.05) > 0


def test_log_sink_scenario_writes_every_record(tmp_path: Path) -> None:
    rate, lines, _ = asyncio.run(sinks.log_sink_rate(tmp_path / "sink.log", 0.1))
    assert rate > 0 and lines > 0 and lines % sinks.BATCH == 0


def test_sinks_scenario_reports_delivery_as_not_available_without_it() -> None:
    result = sinks.run(0.1, True)
    assert result.rows[0].label == "log sink, to a file"
    if sinks.delivery(0.01) is None:
        assert any("not available" in note for note in result.notes)


async def test_load_generator_sends_whole_flows_the_router_accepts(
    settings: Settings, rules: RuleTable, sink: MemorySink, stats: Stats
) -> None:
    server = TestServer(
        make_app(settings, rules=rules, sinks=[sink], stats=stats), host="127.0.0.1"
    )
    await server.start_server()
    try:
        load = Load(f"http://127.0.0.1:{server.port}", rate=200, duration=1.0)
        fig = await load.run(concurrency=8)
    finally:
        await server.close()
    assert fig.requests and fig.requests <= 200
    assert fig.statuses == {"200": fig.requests}
    assert load.flows > 0 and fig.events
    # Every batch carried a flow id the router itself issued: none was refused.
    assert stats.total("metrics.batch.dropped") == 0
    assert stats.total("metrics.events.accepted") == fig.events
    assert stats.total("metrics_flow.begin") == load.flows


def test_load_command_refuses_a_target_that_is_not_a_url() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "load",
            "--target",
            "127.0.0.1",
            "--rate",
            "1",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert "http(s) URL" in done.stderr


def test_smoke_run_of_the_http_scenarios_prints_a_table_and_json(tmp_path: Path) -> None:
    program_or_skip("wrk")
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--only",
            "single",
            "--only",
            "flow",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "    bare aiohttp" in done.stdout and "aiohttp + msgspec decode" in done.stdout
    assert "[1/2] single" in done.stderr
    report = msgspec.json.decode(out.read_bytes(), type=Report)
    assert [s.scenario for s in report.scenarios] == ["single", "flow"]
    for scenario in report.scenarios:
        assert scenario.skipped is None
        row = scenario.rows[0]
        assert row.requests and row.errors == 0
        assert row.baseline is not None and row.baseline.requests
        # The decode floor answered 204 to the same bodies: it decoded them, none refused.
        assert row.floor is not None and row.floor.requests and row.floor.errors == 0
        assert row.cpu_us_per_event and row.peak_rss_mb
    assert all(t.met is None for t in report.targets)  # smoke: not judged
    assert "single / router" in format_table(report.scenarios)


def test_targets_judge_the_figures() -> None:
    from bench.results import Figures, ScenarioResult

    base = Figures(label="baseline", requests_per_s=1000)
    results = [
        ScenarioResult(
            scenario="single",
            title="",
            rows=[Figures(label="r", requests_per_s=650, baseline=base, errors=0)],
        ),
        ScenarioResult(
            scenario="batch",
            title="",
            rows=[Figures(label="r", events_per_s=200_000, errors=3)],
            notes=["log sink wrote 90 of 100 records (90.0%) after a clean stop"],
        ),
        ScenarioResult(
            scenario="flow",
            title="",
            rows=[Figures(label="r", requests_per_s=500, baseline=base)],
        ),
        ScenarioResult(
            scenario="first",
            title="",
            rows=[
                Figures(label=n, p50_ms=ms) for n, ms in (("a", 3), ("b", 1), ("c", 12), ("d", 1))
            ],
        ),
        ScenarioResult(
            scenario="soak",
            title="",
            rows=[Figures(label="r", peak_rss_mb=120, events=10_000_000)],
        ),
    ]
    got = {t.name.split(".")[0]: t.met for t in targets(results)}
    assert got["1"] is True  # 0.65x >= 0.60x
    assert got["2"] is True  # 200,000 x 90% written = 180,000 >= 150,000
    assert got["3"] is False  # 0.50x
    assert got["4"] is False  # 3 non-2xx answers
    assert got["5"] is False  # the slower endpoint's first request took 12 ms
    assert got["6"] is None and got["8"] is None  # not measured
    assert got["7"] is True
