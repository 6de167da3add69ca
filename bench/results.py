"""What a scenario reports, the table the runner prints, the JSON it writes and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec


class Figures(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One measured configuration under the same load as its baselines.

    `baseline` is bare aiohttp (read the body, 204); `floor` is aiohttp + msgspec decoding the
    same body schema (the decode floor).
    """

    label: str
    seconds: float = 0.0
    requests_per_s: float | None = None
    events_per_s: float | None = None
    records_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu_us_per_event: float | None = None
    cpu_us_per_request: float | None = None
    peak_rss_mb: float | None = None
    events: int | None = None
    requests: int | None = None
    errors: int | None = None
    statuses: dict[str, int] | None = None
    baseline: Figures | None = None
    floor: Figures | None = None


class ScenarioResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    scenario: str
    title: str
    rows: list[Figures] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    skipped: str | None = None


class Target(msgspec.Struct, kw_only=True):
    name: str
    wanted: str
    figure: str
    met: bool | None  # None: could not be measured in this run


class Report(msgspec.Struct, kw_only=True):
    machine: dict[str, str]
    command: str
    scenarios: list[ScenarioResult]
    targets: list[Target]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _times(value: float | None, base: Figures | None) -> str:
    """`value` as a multiple of the same figure of `base` (requests/s)."""
    if value is None or base is None or not base.requests_per_s:
        return ""
    return f"{value / base.requests_per_s:.2f}x"


def format_table(results: Sequence[ScenarioResult]) -> str:
    """A plain-text table; HTTP rows carry x bare aiohttp and x decode floor, then both floors."""
    head = (
        "scenario / row",
        "req/s",
        "x bare",
        "x floor",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU us/event",
        "non-2xx",
        "peak RSS MB",
    )
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []

    def cells(
        name: str, fig: Figures, bare: Figures | None, floor: Figures | None
    ) -> tuple[str, ...]:
        return (
            name,
            _num(fig.requests_per_s),
            _times(fig.requests_per_s, bare),
            _times(fig.requests_per_s, floor),
            _num(fig.events_per_s or fig.records_per_s),
            _num(fig.p50_ms, 2),
            _num(fig.p99_ms, 2),
            _num(fig.max_ms, 1),
            _num(fig.cpu_us_per_event, 2),
            _num(fig.errors) if fig.requests is not None else "",
            _num(fig.peak_rss_mb, 1),
        )

    for result in results:
        if result.skipped:
            rows.append((f"{result.scenario}: {result.skipped}",) + ("",) * (len(head) - 1))
            continue
        for fig in result.rows:
            rows.append(cells(f"{result.scenario} / {fig.label}", fig, fig.baseline, fig.floor))
        first = result.rows[0] if result.rows else None
        if first is not None and first.baseline is not None:
            rows.append(cells("    bare aiohttp", first.baseline, first.baseline, first.floor))
        if first is not None and first.floor is not None:
            rows.append(
                cells("    aiohttp + msgspec decode", first.floor, first.baseline, first.floor)
            )
        notes += [f"{result.scenario}: {note}" for note in result.notes]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    out = [line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    if notes:
        out += ["", *notes]
    return "\n".join(out)


def format_targets(targets: Sequence[Target]) -> str:
    out = ["targets:"]
    for t in targets:
        verdict = "not measured" if t.met is None else ("met" if t.met else "MISSED")
        out.append(f"  {t.name}: wanted {t.wanted}; got {t.figure} -> {verdict}")
    return "\n".join(out)


def write_json(report: Report, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")


HTTP_SCENARIOS = ("single", "batch", "flow")
FLOOR_TARGET, GOAL = 0.60, 0.85


def plot(results: Sequence[ScenarioResult], path: Path) -> None:
    """The bench plot as a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = figure(results)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(results: Sequence[ScenarioResult]) -> Any:
    """One small panel per question, horizontal bars so every label is readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = {r.scenario: r for r in results if not r.skipped}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    (ratio_ax, latency_ax, cpu_ax), (inproc_ax, sinks_ax, scale_ax) = axes

    # 1. HTTP scenarios as x bare aiohttp, the floor and goal drawn as lines.
    labels: list[str] = []
    values: list[float] = []
    for name in HTTP_SCENARIOS:
        for f in done[name].rows if name in done else []:
            if f.baseline is None or not f.baseline.requests_per_s or f.requests_per_s is None:
                continue
            if (
                f.floor is not None
                and f.floor.requests_per_s
                and not labels.count(f"{name}: decode floor")
            ):
                labels.append(f"{name}: decode floor")
                values.append(f.floor.requests_per_s / f.baseline.requests_per_s)
            labels.append(f"{name}: {f.label}")
            values.append(f.requests_per_s / f.baseline.requests_per_s)
    _barh(
        ratio_ax, labels, values, "x bare aiohttp (requests/s)", "HTTP throughput vs bare aiohttp"
    )
    ratio_ax.axvline(FLOOR_TARGET, color="red", linestyle="-", label=f"floor {FLOOR_TARGET:.2f}x")
    ratio_ax.axvline(GOAL, color="green", linestyle="--", label=f"goal {GOAL:.2f}x")
    ratio_ax.axvline(1.0, color="grey", linestyle=":", label="bare aiohttp")
    # Right of the bars (they end at about 1.0x): the legend covers no bar or its value.
    ratio_ax.set_xlim(0, max([1.45, *(v * 1.15 for v in values)]))
    ratio_ax.legend(fontsize=7, loc="lower right")

    # 2. Latency percentiles, router vs both baselines.
    rows: list[tuple[str, Figures]] = []
    for name in HTTP_SCENARIOS:
        if name in done and done[name].rows:
            first = done[name].rows[0]
            rows += [(f"{name}: {f.label}", f) for f in done[name].rows]
            if first.floor is not None:
                rows.append((f"{name}: decode floor", first.floor))
            if first.baseline is not None:
                rows.append((f"{name}: bare aiohttp", first.baseline))
    ys = list(range(len(rows)))
    height = 0.4
    latency_ax.barh(
        [y - height / 2 for y in ys], [f.p50_ms or 0 for _, f in rows], height, label="p50"
    )
    latency_ax.barh(
        [y + height / 2 for y in ys], [f.p99_ms or 0 for _, f in rows], height, label="p99"
    )
    latency_ax.set_yticks(ys, [label for label, _ in rows], fontsize=7)
    latency_ax.invert_yaxis()
    latency_ax.set_xscale("log")
    latency_ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    latency_ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    latency_ax.set_xlabel("ms (log) at 64 connections")
    latency_ax.set_title("Latency percentiles")
    latency_ax.legend(fontsize=7)

    # 3. CPU per event: where the time goes against the floors, with the in-process stages
    # of the same requests stacked (the pipeline scenario's "stage:" rows).
    cpu_rows = [(label, f) for label, f in rows if f.cpu_us_per_event is not None]
    _barh(
        cpu_ax,
        [label for label, _ in cpu_rows],
        [f.cpu_us_per_event or 0 for _, f in cpu_rows],
        "CPU us per event (server process)",
        "CPU cost per event",
    )
    _stages(cpu_ax, [f for f in _rows(done, "pipeline") if f.label.startswith("stage: ")])

    # 4. In-process: the pipeline and rule-table scaling.
    inproc = [
        (f"pipeline: {f.label}", f.events_per_s or 0)
        for f in _rows(done, "pipeline")
        if not f.label.startswith("stage: ")
    ]
    inproc += [(f"rules: {f.label}", f.events_per_s or 0) for f in _rows(done, "rules")]
    _barh(
        inproc_ax,
        [a for a, _ in inproc],
        [b for _, b in inproc],
        "events/s",
        "In-process, one core",
    )

    # 5. Sinks, with the 150,000 events/s floor.
    sinks = [(f.label, f.records_per_s or 0) for f in _rows(done, "sinks")]
    _barh(sinks_ax, [a for a, _ in sinks], [b for _, b in sinks], "records/s", "Sinks, one core")
    sinks_ax.axvline(150_000, color="red", label="floor 150,000/s")
    sinks_ax.legend(fontsize=7, loc="lower right")

    # 6. Scale-out.
    scale = [
        (
            f"{f.label} (events/s)" if f.events_per_s else f"{f.label} (req/s)",
            f.events_per_s or f.requests_per_s or 0,
        )
        for f in _rows(done, "scale")
    ]
    _barh(scale_ax, [a for a, _ in scale], [b for _, b in scale], "per second", "Scale-out")

    fig.tight_layout()
    return fig


def _stages(ax: Any, stages: Sequence[Figures]) -> None:
    """Below a panel's bars, one stacked bar per request size: CPU per event of each stage."""
    sizes: dict[str, list[Figures]] = {}
    for f in stages:
        # "stage: process_batch, 50 events a request" -> size "50 events a request"
        sizes.setdefault(f.label.split(", ", 1)[-1], []).append(f)
    if not sizes:
        return
    labels = [t.get_text() for t in ax.get_yticklabels()]
    first = len(labels)
    colours = ["tab:orange", "tab:green", "tab:red", "tab:purple"]
    seen: set[str] = set()
    for y, (size, parts) in enumerate(sizes.items(), start=first):
        left = 0.0
        for index, f in enumerate(parts):
            name = f.label.removeprefix("stage: ").split(", ", 1)[0]
            width = f.cpu_us_per_event or 0
            ax.barh(
                [y],
                [width],
                left=left,
                color=colours[index % len(colours)],
                label=None if name in seen else f"in process: {name}",
            )
            seen.add(name)
            left += width
        ax.text(left, y, f" {left:.2f}" if left < 10 else f" {left:,.0f}", va="center", fontsize=7)
        labels.append(f"in process, {size}")
    ax.set_yticks(list(range(len(labels))), labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.legend(fontsize=7, loc="center right")  # beside the batch rows' short bars


def _rows(done: dict[str, ScenarioResult], name: str) -> list[Figures]:
    return done[name].rows if name in done else []


def _barh(ax: Any, labels: Sequence[str], values: Sequence[float], xlabel: str, title: str) -> None:
    """Horizontal bars, each labelled with its value; 'not measured' when there are none."""
    import matplotlib.ticker

    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if not labels:
        ax.text(
            0.5, 0.5, "not measured in this run", ha="center", va="center", transform=ax.transAxes
        )
        ax.set_yticks([])
        return
    ys = list(range(len(labels)))
    bars = ax.barh(ys, values)
    ax.set_yticks(ys, labels, fontsize=7)
    ax.invert_yaxis()
    for bar, value in zip(bars, values, strict=True):
        text = f"{value:.2f}" if value < 10 else f"{value:,.0f}"
        ax.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text, va="center", fontsize=7
        )
    ax.margins(x=0.25)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_short))


def _short(value: float, _: object = None) -> str:
    """Axis numbers that never collide: 600k, 1.2M, 0.85."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"
