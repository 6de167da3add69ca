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

from .results import Figures, Report, ScenarioResult, Target
from .scenarios import RESULT_MARK, SCENARIOS

MILLION = 1_000_000


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


def targets(results: Sequence[ScenarioResult]) -> list[Target]:
    out = []
    single = _row(results, "single")
    if single and single.baseline and single.requests_per_s and single.baseline.requests_per_s:
        ratio = single.requests_per_s / single.baseline.requests_per_s
        out.append(
            Target(
                name="1. POST /metrics, 1 event: requests/s vs baseline",
                wanted=">= 0.80x",
                figure=f"{ratio:.2f}x ({single.requests_per_s:,.0f}"
                f" vs {single.baseline.requests_per_s:,.0f} req/s)",
                met=ratio >= 0.8,
            )
        )
    else:
        out.append(
            Target(name="1. requests/s vs baseline", wanted=">= 0.80x", figure="-", met=None)
        )
    hung = _row(results, "single", 1)
    if single and hung and single.requests_per_s and hung.requests_per_s is not None:
        share_kept = hung.requests_per_s / single.requests_per_s
        out.append(
            Target(
                name="1b. POST /metrics, 1 event, Amplitude hung: share of scenario 1",
                wanted=">= 90%",
                figure=f"{share_kept:.0%} ({hung.requests_per_s:,.0f}"
                f" vs {single.requests_per_s:,.0f} req/s)",
                met=share_kept >= 0.9,
            )
        )
    batch = _row(results, "batch")
    eps = batch.events_per_s if batch else None
    # Accepted is not written: say how much of it the log sink kept up with.
    kept = [
        n.split("(", 1)[1].split(")", 1)[0]
        for r in results
        if r.scenario == "batch"
        for n in r.notes
        if n.startswith("log sink wrote") and "(" in n
    ]
    # Accepted is not delivered: only events whose records the log sink wrote count.
    share = min(1.0, float(kept[0].rstrip("%")) / 100) if kept else None
    delivered = eps * share if eps is not None and share is not None else eps
    out.append(
        Target(
            name="2. POST /metrics, 50 events: events/s on one router process",
            wanted=">= 150,000 delivered",
            figure=(f"{delivered:,.0f} delivered" if delivered else "-")
            + (f" ({eps:,.0f} accepted; the log sink wrote {kept[0]})" if kept and eps else ""),
            met=None if delivered is None else delivered >= 150_000,
        )
    )
    pipe = _row(results, "pipeline")
    peps = pipe.events_per_s if pipe else None
    out.append(
        Target(
            name="4. in-process pipeline: events/s per core",
            wanted=">= 500,000",
            figure=f"{peps:,.0f}" if peps else "-",
            met=None if peps is None else peps >= 500_000,
        )
    )
    small, large = _row(results, "rules", 0), _row(results, "rules", 2)
    if small and large and small.events_per_s and large.events_per_s:
        ratio = large.events_per_s / small.events_per_s
        out.append(
            Target(
                name="5. 1000 fuzzy rules vs 10: throughput",
                wanted=">= 0.90x",
                figure=f"{ratio:.2f}x ({large.events_per_s:,.0f} vs {small.events_per_s:,.0f}"
                " events/s)",
                met=ratio >= 0.9,
            )
        )
    else:
        out.append(
            Target(name="5. 1000 vs 10 fuzzy rules", wanted=">= 0.90x", figure="-", met=None)
        )
    if batch and batch.peak_rss_mb is not None and batch.events:
        enough = batch.events >= MILLION
        out.append(
            Target(
                name="peak RSS of the router after a million events (scenario 2)",
                wanted="< 150 MB",
                figure=f"{batch.peak_rss_mb:.1f} MB after {batch.events:,} events"
                + ("" if enough else " (fewer than a million: not comparable)"),
                met=(batch.peak_rss_mb < 150) if enough else None,
            )
        )
    else:
        out.append(Target(name="peak RSS after 1M events", wanted="< 150 MB", figure="-", met=None))
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
    }


def run_all(names: Sequence[str], duration: float, smoke: bool) -> Report:
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
