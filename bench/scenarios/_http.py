"""What the HTTP scenarios share: the router's config, the baseline, wrk runs, figures."""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from router.enrich.flow import FlowSigner
from router.mapping import RequestInfo

from .. import wrk
from ..procs import (
    Server,
    baseline_server,
    count_lines,
    cpu_seconds,
    free_port,
    peak_rss_mb,
    placement,
    router_server,
)
from ..results import Figures, ScenarioResult
from ..traffic import FLOW_KEY

CONNECTIONS = 64


def router_config(directory: Path, log_path: Path, extra: str = "") -> Path:
    """The router's config: a flow key the bench signs with, the log sink writing to a file."""
    path = directory / "router.toml"
    path.write_text(
        "[server]\n"
        'host = "127.0.0.1"\n'
        "[flow]\n"
        f'key = "{FLOW_KEY}"\n'
        "[sinks.log]\n"
        f'path = "{log_path}"\n'
        f"[spool]\n"
        f'path = "{directory / "spool"}"\n' + extra
    )
    return path


def measure(
    server: Server,
    url: str,
    script: Path,
    duration: float,
    wrk_cpu: int | None,
    events_per_request: int,
    label: str,
    warmup: bool,
) -> tuple[Figures, int]:
    """One measured wrk run (after an optional 1 s warm-up); also the requests sent in all."""
    sent = 0
    if warmup:
        first = wrk.run(url, script, 1, wrk_cpu, CONNECTIONS)
        sent += first.requests - first.status_errors
    before = cpu_seconds(server.pid)
    result = wrk.run(url, script, duration, wrk_cpu, CONNECTIONS)
    cpu = cpu_seconds(server.pid) - before
    # Only answered-with-2xx requests count: a 503 (backpressure) accepted nothing.
    accepted = result.requests - result.status_errors
    sent += accepted
    events = accepted * events_per_request
    seconds = result.duration_us / 1e6
    figures = Figures(
        label=label,
        seconds=round(seconds, 2),
        requests_per_s=round(accepted / (result.duration_us / 1e6), 1),
        events_per_s=round(events / seconds, 1),
        p50_ms=result.p50_us / 1000,
        p99_ms=result.p99_us / 1000,
        max_ms=result.max_us / 1000,
        cpu_us_per_event=round(cpu * 1e6 / events, 3) if events else None,
        cpu_us_per_request=round(cpu * 1e6 / result.requests, 3) if result.requests else None,
        peak_rss_mb=round(peak_rss_mb(server.pid), 1),
        events=sent * events_per_request,
        requests=result.requests,
        errors=result.errors,
    )
    return figures, sent


ROUNDS = 3  # each server measured this many times, interleaved; the median round counts


def median_round(rounds: Sequence[Figures]) -> Figures:
    """The round with the median requests/s (a shared machine's drift hits every server)."""
    ordered = sorted(rounds, key=lambda f: f.requests_per_s or 0.0)
    return ordered[len(ordered) // 2]


def settle(server: Server, limit: float = 30.0) -> None:
    """Wait (bounded) until the server's CPU time stops growing: its sinks have caught up,
    so what it still has to write does not run during the next server's measurement."""
    end = time.monotonic() + limit
    last = cpu_seconds(server.pid)
    while time.monotonic() < end:
        time.sleep(0.25)
        now = cpu_seconds(server.pid)
        if now - last < 0.01:
            return
        last = now


def run_http(
    scenario: str,
    title: str,
    *,
    method: str,
    path: str,
    body: bytes | None,
    events_per_request: int,
    records_per_request: Callable[[FlowSigner], int],
    duration: float,
    smoke: bool,
    headers: Mapping[str, str] | None = None,
    label: str = "router",
    variants: Sequence[tuple[str, str]] = (),
) -> ScenarioResult:
    """Both baselines and the router, same wrk script and pinning; what the log sink wrote.

    Every server is started first; then each is measured ROUNDS times, interleaved (bare,
    decode floor, router, variants; the next round starting one server later), and the
    median round of each is reported:
    the host's drift over a run then moves baselines and router alike. `variants` are
    (label, extra config) pairs: the router measured again with more config (e.g. an
    Amplitude sink pointed at a destination that never answers).
    """
    reason = wrk.available()
    if reason is not None:
        return ScenarioResult(scenario=scenario, title=title, skipped=reason)
    server_cpu, wrk_cpu = placement()
    rounds = 1 if smoke else ROUNDS
    notes = []
    if server_cpu is None:
        notes.append("one CPU only: server and wrk share it (figures are not comparable)")
    else:
        notes.append(
            f"server pinned to CPU {server_cpu}, wrk (1 thread) to CPU {wrk_cpu};"
            f" {rounds} interleaved rounds of {duration:g} s each, median round"
        )
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        body_file = None
        if body is not None:
            body_file = directory / "body.json"
            body_file.write_bytes(body)
        script = wrk.write_script(directory / "script.lua", method, body_file, headers)
        log_path = directory / "router.log"
        # (label, server, port); the router is the third.
        started: list[tuple[str, Server, int]] = []
        for name, mode in (("baseline", "bare"), ("decode floor", "decode")):
            port = free_port()
            started.append(
                (name, stack.enter_context(baseline_server(port, server_cpu, mode)), port)
            )
        configs = [(label, router_config(directory, log_path))]
        for name, extra in variants:
            variant_dir = directory / name.replace(" ", "-")
            variant_dir.mkdir()
            configs.append((name, router_config(variant_dir, variant_dir / "router.log", extra)))
        for name, config in configs:
            port = free_port()
            started.append(
                (name, stack.enter_context(router_server(config, port, server_cpu)), port)
            )
        measured: dict[str, list[Figures]] = {name: [] for name, _, _ in started}
        sent_in_all: dict[str, int] = {name: 0 for name, _, _ in started}
        for index in range(rounds):
            # Each round starts one server later: on a shared host the first server of a
            # round ran slower (seen in A/Bs), so no server is always first.
            shift = index % len(started)
            for name, server, port in started[shift:] + started[:shift]:
                url = f"http://127.0.0.1:{port}{path}"
                warm = index == 0 and not smoke
                figures, sent = measure(
                    server, url, script, duration, wrk_cpu, events_per_request, name, warm
                )
                measured[name].append(figures)
                sent_in_all[name] += sent
                settle(server)
        baseline = median_round(measured["baseline"])
        floor = median_round(measured["decode floor"])
        _, router, router_port = started[2]
        # wrk does not count the requests in flight when it stops (up to one per
        # connection, more while backpressure holds them): the router's own count does.
        answered = answered_2xx(router_port, path.split("?", 1)[0])
        code = router.stop()
        figures = median_round(measured[label])
        figures.events = sent_in_all[label] * events_per_request
        figures.baseline = baseline
        figures.floor = floor
        written = count_lines(log_path) if log_path.exists() else 0
        sent = answered if answered is not None else sent_in_all[label]
        expected = sent * records_per_request(FlowSigner(FLOW_KEY))
        share = f" ({written / expected:.1%})" if expected else ""
        notes.append(
            f"log sink wrote {written:,} of {expected:,} records{share} after a clean stop"
            f" (exit {code}); {figures.events:,} events sent in all, including the warm-up"
        )
        errors = sum(f.errors or 0 for f in measured[label])
        figures.errors = errors
        if errors:
            notes.append(
                f"{errors:,} requests not answered 2xx in all rounds (503 = backpressure: a"
                " sink was behind); they are not counted"
            )
        dropped = [line for line in router.tail if "dropped" in line or "not delivered" in line]
        if dropped:
            notes.append(f"router said: {dropped[-1][-160:]}")
        rows = [figures]
        for name, _ in configs[1:]:
            other = median_round(measured[name])
            other.baseline = baseline
            other.floor = floor
            other.errors = sum(f.errors or 0 for f in measured[name])
            rows.append(other)
            if figures.requests_per_s and other.requests_per_s is not None:
                notes.append(
                    f"{name}: {other.requests_per_s / figures.requests_per_s:.0%} of the"
                    f" router's requests/s without it ({other.errors or 0:,} non-2xx)"
                )
    return ScenarioResult(scenario=scenario, title=title, rows=rows, notes=notes)


def answered_2xx(port: int, endpoint: str) -> int | None:
    """Requests to `endpoint` the router answered 200, from `/__stats__`, once it is steady."""
    labels = re.escape(f'{{endpoint="{endpoint}",status="200"}}')
    pattern = re.compile(rf"^metrics_router_requests_total{labels} (\S+)$", re.M)
    last = None
    for _ in range(50):  # bounded: requests still waiting for room finish within seconds
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/__stats__", timeout=5) as resp:
                found = pattern.search(resp.read().decode())
        except OSError:
            return None
        count = int(float(found.group(1))) if found else None
        if count is not None and count == last:
            return count
        last = count
        time.sleep(0.2)
    return last


def records_for(body: bytes) -> Callable[[FlowSigner], int]:
    """How many records the pipeline makes from one request with this body."""

    def count(signer: FlowSigner) -> int:
        from router.enrich.flow import now_ms
        from router.handlers.metrics import decode_body
        from router.mapping import Pipeline
        from router.ruletable import default_rules_path, load_rules
        from router.ruletable.ruleset import RuleSet
        from router.stats import Stats

        from ..traffic import USER_AGENT

        pipeline = Pipeline(RuleSet(load_rules([default_rules_path()])), signer, Stats())
        req = RequestInfo(received=now_ms(), user_agent=USER_AGENT, locale="en-US")
        batch = pipeline.process_batch(decode_body(body), req)
        return len(batch.amplitude) + len(batch.flow) + len(batch.vwo)

    return count
