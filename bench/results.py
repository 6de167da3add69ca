"""What a scenario reports, the table the runner prints, the JSON it writes and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec


class Figures(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One measured configuration; `baseline` is the bare aiohttp app under the same load."""

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


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}x)"


def format_table(results: Sequence[ScenarioResult]) -> str:
    """A plain-text table; HTTP figures carry their ratio to the baseline in parentheses."""
    head = (
        "scenario / row",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU us/event",
        "peak RSS MB",
    )
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for result in results:
        if result.skipped:
            rows.append((f"{result.scenario}: {result.skipped}",) + ("",) * 7)
            continue
        for fig in result.rows:
            b = fig.baseline
            rows.append(
                (
                    f"{result.scenario} / {fig.label}",
                    _num(fig.requests_per_s)
                    + _ratio(fig.requests_per_s, b.requests_per_s if b else None),
                    _num(fig.events_per_s or fig.records_per_s),
                    _num(fig.p50_ms, 2) + _ratio(fig.p50_ms, b.p50_ms if b else None),
                    _num(fig.p99_ms, 2) + _ratio(fig.p99_ms, b.p99_ms if b else None),
                    _num(fig.max_ms, 1) + _ratio(fig.max_ms, b.max_ms if b else None),
                    _num(fig.cpu_us_per_event, 2)
                    + _ratio(fig.cpu_us_per_event, b.cpu_us_per_event if b else None),
                    _num(fig.peak_rss_mb, 1)
                    + _ratio(fig.peak_rss_mb, b.peak_rss_mb if b else None),
                )
            )
            if b is not None:
                rows.append(
                    (
                        "    baseline (bare aiohttp)",
                        _num(b.requests_per_s),
                        _num(b.events_per_s),
                        _num(b.p50_ms, 2),
                        _num(b.p99_ms, 2),
                        _num(b.max_ms, 1),
                        _num(b.cpu_us_per_event, 2),
                        _num(b.peak_rss_mb, 1),
                    )
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


def plot(results: Sequence[ScenarioResult], path: Path) -> None:
    """Throughput (log scale) and latency percentiles per scenario row, router vs baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r.scenario, f) for r in results if not r.skipped for f in r.rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 9))
    labels = [f"{s}\n{f.label}" for s, f in rows]
    xs = list(range(len(rows)))
    rate = [f.events_per_s or f.records_per_s or f.requests_per_s or 0.0 for _, f in rows]
    base = [(f.baseline.events_per_s or 0.0) if f.baseline else 0.0 for _, f in rows]
    width = 0.4
    top.bar([x - width / 2 for x in xs], rate, width, label="router")
    top.bar([x + width / 2 for x in xs], base, width, label="baseline (bare aiohttp)")
    top.set_yscale("log")
    top.set_ylabel("events/s (records/s for sinks)")
    top.set_xticks(xs, labels, fontsize=7)
    top.set_title("Throughput")
    top.legend()
    http = [(s, f) for s, f in rows if f.p50_ms is not None]
    hx = list(range(len(http)))
    w = 0.13
    for i, name in enumerate(("p50_ms", "p99_ms", "max_ms")):

        def get(f: Figures | None, name: str = name) -> float:
            value = getattr(f, name, None) if f is not None else None
            return float(value) if value is not None else 0.0

        label = name.removesuffix("_ms")
        bottom.bar([x + (i - 2.5) * w for x in hx], [get(f) for _, f in http], w, label=label)
        bottom.bar(
            [x + (i + 0.5) * w for x in hx],
            [get(f.baseline) for _, f in http],
            w,
            label=f"baseline {label}",
            hatch="//",
            alpha=0.6,
        )
    bottom.set_yscale("log")
    bottom.set_ylabel("latency ms")
    bottom.set_xticks(hx, [f"{s}\n{f.label}" for s, f in http], fontsize=7)
    bottom.set_title("Latency percentiles (HTTP scenarios)")
    bottom.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
