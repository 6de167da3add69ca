"""Runs every scenario in its own process, prints the table and checks the targets."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import msgspec

import router
from router import build_kind

from .results import Figures, Report, ScenarioResult, Target
from .scenarios import RESULT_MARK, SCENARIOS

MILLION = 1_000_000
FLOOR, GOAL = 0.60, 0.85  # x bare aiohttp, the speed issue's floor and goal


def run_scenario(name: str, duration: float, smoke: bool, index: int, total: int) -> ScenarioResult:
    """`python -m bench.scenarios.NAME` in a child process, with a live progress line."""
    argv = [sys.executable, "-m", f"bench.scenarios.{name}", "--duration", str(duration)]
    if smoke:
        argv.append("--smoke")
    started = time.monotonic()
    stop = threading.Event()
    tty = sys.stderr.isatty()

    def progress() -> None:
        while not stop.wait(1.0):
            if tty:
                elapsed = time.monotonic() - started
                print(f"\r[{index}/{total}] {name}: {elapsed:5.1f} s", end="", file=sys.stderr)

    print(f"[{index}/{total}] {name}: running", file=sys.stderr, flush=True)
    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration * 20 + 300)
    finally:
        stop.set()
        ticker.join()
    elapsed = time.monotonic() - started
    end = "\r" if tty else ""
    print(f"{end}[{index}/{total}] {name}: done in {elapsed:.1f} s", file=sys.stderr, flush=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return msgspec.json.decode(line[len(RESULT_MARK) :], type=ScenarioResult)
    tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
    return ScenarioResult(
        scenario=name,
        title=name,
        skipped=f"failed (exit {done.returncode}): " + " | ".join(tail),
    )


def _row(results: Sequence[ScenarioResult], scenario: str, index: int = 0) -> Figures | None:
    for result in results:
        if result.scenario == scenario and not result.skipped and len(result.rows) > index:
            return result.rows[index]
    return None


def _note_share(results: Sequence[ScenarioResult], scenario: str) -> float | None:
    """The share of records the log sink wrote, from the scenario's "log sink wrote" note."""
    for result in results:
        if result.scenario != scenario:
            continue
        for note in result.notes:
            if note.startswith("log sink wrote") and "(" in note:
                return min(1.0, float(note.split("(", 1)[1].split("%", 1)[0]) / 100)
    return None


def _versus_bare(results: Sequence[ScenarioResult], scenario: str, name: str) -> Target:
    """Requests/s as a multiple of bare aiohttp (and of the decode floor, for the record)."""
    fig = _row(results, scenario)
    wanted = f">= {FLOOR:.2f}x (goal {GOAL:.2f}x)"
    if (
        fig is None
        or fig.requests_per_s is None
        or not (fig.baseline and fig.baseline.requests_per_s)
    ):
        return Target(name=name, wanted=wanted, figure="-", met=None)
    ratio = fig.requests_per_s / fig.baseline.requests_per_s
    floor = ""
    if fig.floor is not None and fig.floor.requests_per_s:
        floor = f", {fig.requests_per_s / fig.floor.requests_per_s:.2f}x decode floor"
    return Target(
        name=name,
        wanted=wanted,
        figure=f"{ratio:.2f}x bare{floor} ({fig.requests_per_s:,.0f}"
        f" vs {fig.baseline.requests_per_s:,.0f} req/s)",
        met=ratio >= FLOOR,
    )


def _at_least(name: str, value: float | None, floor: float, goal: float, unit: str) -> Target:
    wanted = f">= {floor:,.0f} {unit} (goal {goal:,.0f})"
    if value is None:
        return Target(name=name, wanted=wanted, figure="-", met=None)
    return Target(name=name, wanted=wanted, figure=f"{value:,.0f} {unit}", met=value >= floor)


def targets(results: Sequence[ScenarioResult]) -> list[Target]:
    """The speed issue's targets, each judged from figures measured in this run."""
    out = [_versus_bare(results, "single", "1. POST /metrics, 1 event: requests/s")]
    single, hung = _row(results, "single"), _row(results, "single", 1)
    if single and hung and single.requests_per_s and hung.requests_per_s is not None:
        kept = hung.requests_per_s / single.requests_per_s
        out.append(
            Target(
                name="1b. POST /metrics, 1 event, Amplitude hung: share of scenario 1",
                wanted=">= 90%",
                figure=f"{kept:.0%} ({hung.requests_per_s:,.0f} vs {single.requests_per_s:,.0f})",
                met=kept >= 0.9,
            )
        )
    # Accepted is not delivered: only events whose records the log sink wrote count.
    batch = _row(results, "batch")
    share = _note_share(results, "batch")
    eps = batch.events_per_s if batch else None
    delivered = eps * share if eps is not None and share is not None else None
    out.append(
        _at_least(
            "2. POST /metrics, 50 events: events/s written by the log sink, one core",
            delivered,
            150_000,
            300_000,
            "events/s",
        )
    )
    out.append(_versus_bare(results, "flow", "3. GET /metrics-flow: requests/s"))
    refused = [f.errors for name in ("single", "batch") if (f := _row(results, name)) is not None]
    out.append(
        Target(
            name="4. non-2xx answers at 64 closed-loop connections, log sink only",
            wanted="0",
            figure=f"{sum(e or 0 for e in refused):,}" if refused else "-",
            met=(sum(e or 0 for e in refused) == 0) if refused else None,
        )
    )
    first = [_row(results, "first", 0), _row(results, "first", 2)]
    slowest = max((f.p50_ms or 0.0 for f in first if f is not None), default=None)
    out.append(
        Target(
            name="5. first request after start (median of fresh starts, slower endpoint)",
            wanted="< 10 ms (goal 2 ms)",
            figure="-" if slowest is None else f"{slowest:.2f} ms",
            met=None if slowest is None else slowest < 10,
        )
    )
    amplitude = next(
        (
            f.records_per_s
            for r in results
            if r.scenario == "sinks" and not r.skipped
            for f in r.rows
            if f.label.lower().startswith("amplitude")
        ),
        None,
    )
    out.append(
        _at_least(
            "6. Amplitude sink to the local fake, one core", amplitude, 150_000, 300_000, "events/s"
        )
    )
    soak = _row(results, "soak")
    if soak is not None and soak.peak_rss_mb is not None and soak.events:
        enough = soak.events >= 10 * MILLION
        out.append(
            Target(
                name="7. peak RSS after 10 M events",
                wanted="<= 150 MB (goal 100 MB)",
                figure=f"{soak.peak_rss_mb:.1f} MB after {soak.events:,} events"
                + ("" if enough else " (fewer than 10 M: not comparable)"),
                met=(soak.peak_rss_mb <= 150) if enough else None,
            )
        )
    else:
        out.append(
            Target(name="7. peak RSS after 10 M events", wanted="<= 150 MB", figure="-", met=None)
        )
    small, large = _row(results, "rules", 0), _row(results, "rules", 2)
    if small and large and small.events_per_s and large.events_per_s:
        ratio = large.events_per_s / small.events_per_s
        out.append(
            Target(
                name="8. in-process pipeline, 1000 fuzzy rules vs 10",
                wanted=">= 0.90x (goal 1.00x)",
                figure=f"{ratio:.2f}x ({large.events_per_s:,.0f} vs {small.events_per_s:,.0f}"
                " events/s)",
                met=ratio >= 0.9,
            )
        )
    else:
        out.append(
            Target(name="8. 1000 vs 10 fuzzy rules", wanted=">= 0.90x", figure="-", met=None)
        )
    pipe = _row(results, "pipeline")
    peps = pipe.events_per_s if pipe else None
    out.append(
        _at_least("9. in-process pipeline: events/s per core", peps, 500_000, 500_000, "events/s")
    )
    return out


def machine() -> dict[str, str]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Which router the scenarios' processes import: compiled (mypyc) or pure Python.
        "router": build_kind(),
    }


def run_all(names: Sequence[str], duration: float, smoke: bool) -> Report:
    print(f"router: {build_kind()}, {os.path.dirname(router.__file__)}", file=sys.stderr)
    results = [
        run_scenario(name, duration, smoke, i, len(names)) for i, name in enumerate(names, 1)
    ]
    return Report(
        machine=machine(),
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        scenarios=results,
        targets=targets(results),
    )


ALL = [name for name, _ in SCENARIOS]
