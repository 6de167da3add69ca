"""The bench plot: one panel per question, the in-process stages stacked under the CPU panel."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from bench.results import Figures, ScenarioResult, _barh, _stages, figure, plot

SIZES = {"1 event a request": (18.5, 30.6, 15.1), "50 events a request": (0.4, 2.0, 1.7)}
NAMES = ("decode and checks", "process_batch", "log sink encode")
STAGES = [
    Figures(label=f"stage: {name}, {size}", cpu_us_per_event=cpu)
    for size, cpus in SIZES.items()
    for name, cpu in zip(NAMES, cpus, strict=True)
]


def test_stages_stack_one_bar_per_request_size_below_the_panel() -> None:
    fig, ax = plt.subplots()
    _barh(ax, ["single: router", "single: bare aiohttp"], [119.0, 55.0], "us", "CPU")
    _stages(ax, STAGES)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "single: router",
        "single: bare aiohttp",
        "in process, 1 event a request",
        "in process, 50 events a request",
    ]
    # Each stage a segment starting where the one before ended; the total is the sum.
    bars = [p for p in ax.patches[2:] if isinstance(p, Rectangle)]
    segments = sorted(
        (round(p.get_y() + p.get_height() / 2), p.get_x(), p.get_width()) for p in bars
    )
    assert [(y, round(x, 2), round(w, 2)) for y, x, w in segments] == [
        (2, 0.0, 18.5),
        (2, 18.5, 30.6),
        (2, 49.1, 15.1),
        (3, 0.0, 0.4),
        (3, 0.4, 2.0),
        (3, 2.4, 1.7),
    ]
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [
        "in process: decode and checks",
        "in process: process_batch",
        "in process: log sink encode",
    ]
    plt.close(fig)


def test_the_plot_is_written_with_stage_rows_kept_out_of_the_events_panel(tmp_path: Path) -> None:
    results = [
        ScenarioResult(
            scenario="single",
            title="single",
            rows=[
                Figures(
                    label="router",
                    requests_per_s=8000,
                    cpu_us_per_event=119,
                    p50_ms=7,
                    p99_ms=19,
                    baseline=Figures(label="bare", requests_per_s=18000, cpu_us_per_event=55),
                    floor=Figures(label="floor", requests_per_s=13000, cpu_us_per_event=75),
                )
            ],
        ),
        ScenarioResult(
            scenario="pipeline",
            title="pipeline",
            rows=[Figures(label="50 events a batch", events_per_s=500_000), *STAGES],
        ),
    ]
    fig = figure(results)
    cpu_ax, inproc_ax = fig.axes[2], fig.axes[3]
    assert [t.get_text() for t in inproc_ax.get_yticklabels()] == ["pipeline: 50 events a batch"]
    assert [t.get_text() for t in cpu_ax.get_yticklabels()][-2:] == [
        "in process, 1 event a request",
        "in process, 50 events a request",
    ]
    plt.close(fig)
    path = tmp_path / "bench.png"
    plot(results, path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert path.stat().st_size > 20_000
