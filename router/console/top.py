"""`metrics-router top`: a live terminal dashboard of a router's (or forwarder's) counters.

Every second it reads `/__stats__` (parsed with prometheus_client's parser) and
`/__heartbeat__`, and shows rates from the difference between two readings. It shows
what it finds: a metric it has no panel for goes to "other counters", so a forwarder,
or a router with a newer metric set, is shown too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

Labels = tuple[tuple[str, str], ...]
Series = dict[tuple[str, Labels], float]


def parse(text: str, prefix: str) -> Series:
    """`/__stats__` text as {(name without prefix and _total, labels): value}."""
    out: Series = {}
    head = f"{prefix}_" if prefix else ""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix(head).removesuffix("_total")
            labels = tuple(sorted(sample.labels.items()))
            out[(name, labels)] = out.get((name, labels), 0.0) + sample.value
    return out


@dataclass
class Reading:
    """One reading of a router: its series, heartbeat checks and when it was taken."""

    at: float
    series: Series
    checks: dict[str, str] = field(default_factory=dict)
    status: str = "unknown"
    error: str | None = None


@dataclass
class View:
    """Two readings and the series the panels have shown (the rest is 'other')."""

    now: Reading
    before: Reading | None
    shown: set[tuple[str, Labels]] = field(default_factory=set)

    def pick(
        self, name: str, keep: Callable[[dict[str, str]], bool] = lambda _: True
    ) -> list[tuple[dict[str, str], float, float | None]]:
        """Every series of `name`: (labels, total, rate per second or None)."""
        found = []
        for key, value in self.now.series.items():
            if key[0] != name or not keep(dict(key[1])):
                continue
            self.shown.add(key)
            found.append((dict(key[1]), value, self.rate(key)))
        return found

    def rate(self, key: tuple[str, Labels]) -> float | None:
        if self.before is None:
            return None
        dt = self.now.at - self.before.at
        if dt <= 0:
            return None
        return max(0.0, (self.now.series[key] - self.before.series.get(key, 0.0)) / dt)

    def summed(self, name: str, by: str, **match: str) -> dict[str, tuple[float, float | None]]:
        """`name`'s series summed per value of label `by` (other labels, e.g. worker, added)."""
        out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for labels, total, rate in self.pick(
            name, lambda ls: all(ls.get(k) == v for k, v in match.items())
        ):
            acc = out[labels.get(by, "")]
            acc[0] += total
            acc[1] += rate or 0.0
            acc[2] += rate is not None
        return {k: (v[0], v[1] if v[2] else None) for k, v in out.items()}


def _n(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False, box=None, pad_edge=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    return table


def requests_panel(view: View) -> Table | None:
    table = _table("requests", "endpoint", "req/s", "4xx/s", "5xx/s", "total")
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for labels, total, rate in view.pick("requests"):
        row = rows[labels.get("endpoint", "?")]
        status = labels.get("status", "")
        row[0] += rate or 0.0
        row[1] += (rate or 0.0) if status.startswith("4") else 0.0
        row[2] += (rate or 0.0) if status.startswith("5") else 0.0
        row[3] += total
    for endpoint, (rate, r4, r5, total) in sorted(rows.items()):
        table.add_row(endpoint, _n(rate), _n(r4), _n(r5), _n(total))
    return table if rows else None


def rejected_panel(view: View) -> Table | None:
    table = _table("refused requests", "endpoint", "status", "reason", "/s", "total")
    found = sorted(view.pick("request_rejected"), key=lambda x: sorted(x[0].items()))
    for labels, total, rate in found:
        get = labels.get
        table.add_row(
            get("endpoint", "?"), get("status", "?"), get("reason", "?"), _n(rate), _n(total)
        )
    return table if found else None


def events_panel(view: View) -> Table | None:
    table = _table("events", "", "/s", "total")
    for name, what in (
        ("metrics_events_accepted", "accepted"),
        ("metrics_events_mapped", "mapped"),
        ("metrics_events_unmapped", "unmapped"),
        ("server_events_accepted", "server events accepted"),
        ("server_events_mapped", "server events mapped"),
        ("server_events_unmapped", "server events unmapped"),
        ("metrics_flow_begin", "flows begun"),
    ):
        for _, (total, rate) in view.summed(name, by="").items():
            table.add_row(what, _n(rate), _n(total))
    for name, what in (
        ("metrics_events_dropped", "dropped"),
        ("metrics_batch_dropped", "batches dropped"),
    ):
        for reason, (total, rate) in sorted(view.summed(name, by="reason").items()):
            table.add_row(f"{what}: {reason}", _n(rate), _n(total))
    return table if table.row_count else None


def sinks_panel(view: View) -> Table | None:
    table = _table(
        "sinks",
        *("sink", "sent/s", "received/s", "failed", "dead-lettered", "dropped", "queue"),
        *("spool rows", "bytes"),
    )
    parts = {
        "sent": view.summed("sink_sent", by="sink"),
        "received": view.summed("sink_received", by="sink"),
        "failed": view.summed("sink_failed", by="sink"),
        "dead": view.summed("sink_dead_lettered", by="sink"),
        "dropped": view.summed("sink_dropped", by="sink"),
        "queue": view.summed("sink_queue_depth", by="sink"),
        "rows": view.summed("spool_rows", by="sink"),
        "bytes": view.summed("spool_bytes", by="sink"),
    }
    sinks = sorted({s for part in parts.values() for s in part})
    for sink in sinks:

        def get(part: str, rate: bool = False, sink: str = sink) -> str:
            total, per_s = parts[part].get(sink, (None, None))
            return _n(per_s if rate else total)

        table.add_row(
            sink,
            get("sent", True),
            get("received", True),
            get("failed"),
            get("dead"),
            get("dropped"),
            get("queue"),
            get("rows"),
            get("bytes"),
        )
    return table if sinks else None


def deadletters_panel(view: View) -> Table | None:
    table = _table("dead letters", "destination", "reason", "/s", "total")
    for labels, total, rate in sorted(view.pick("dlq_added"), key=lambda x: sorted(x[0].items())):
        table.add_row(
            labels.get("destination", "?"), labels.get("reason", "?"), _n(rate), _n(total)
        )
    return table if table.row_count else None


def heartbeat_panel(view: View) -> Table | None:
    if not view.now.checks:
        return None
    table = _table(f"heartbeat: {view.now.status}", "check", "status")
    for name, status in sorted(view.now.checks.items()):
        table.add_row(name, Text(status, style="green" if status == "ok" else "bold red"))
    return table


def other_panel(view: View) -> Table | None:
    """Every series no panel showed (a forwarder's counters, newer metrics), summed over workers."""
    table = _table("other counters", "name", "/s", "total")
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key, value in view.now.series.items():
        if key in view.shown:
            continue
        labels = ",".join(f"{k}={v}" for k, v in key[1] if k != "worker")
        row = rows[f"{key[0]}{{{labels}}}" if labels else key[0]]
        row[0] += view.rate(key) or 0.0
        row[1] += value
    for name, (rate, total) in sorted(rows.items()):
        table.add_row(name, _n(rate if view.before else None), _n(total))
    return table if rows else None


PANELS = (
    requests_panel,
    rejected_panel,
    events_panel,
    sinks_panel,
    deadletters_panel,
    heartbeat_panel,
    other_panel,
)


def render(url: str, now: Reading, before: Reading | None) -> RenderableType:
    stamp = time.strftime("%H:%M:%S UTC", time.gmtime(now.at))
    head = Text.assemble(("metrics-router top", "bold"), f"  {url}  {stamp}")
    if now.error:
        head.append(f"  unreachable: {now.error}", style="bold red")
    view = View(now, before)
    parts: list[RenderableType] = [head]
    for panel in PANELS:
        table = panel(view)
        if table is not None:
            parts += [Text(""), table]
    return Group(*parts)


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def read(url: str, prefix: str, timeout: float = 2.0) -> Reading:
    """One reading; a router that cannot be reached gives an empty one with the error."""
    at = time.time()
    try:
        status, body = _get(f"{url}/__stats__", timeout)
        if status != 200:
            return Reading(at, {}, error=f"/__stats__ answered {status}")
        reading = Reading(at, parse(body.decode(), prefix))
    except (OSError, ValueError) as exc:
        return Reading(at, {}, error=str(exc))
    try:
        status, body = _get(f"{url}/__heartbeat__", timeout)
        data = json.loads(body)
        reading.checks = {str(k): str(v) for k, v in data.get("checks", {}).items()}
        reading.status = str(data.get("status", status))
    except (OSError, ValueError, AttributeError):
        pass  # a forwarder may have no heartbeat: the panel is left out
    return reading


def readings(url: str, prefix: str, interval: float) -> Iterable[tuple[Reading, Reading | None]]:
    before: Reading | None = None
    while True:
        now = read(url, prefix)
        yield now, before
        if not now.error:
            before = now
        time.sleep(max(0.0, interval - (time.time() - now.at)))


def top(url: str, prefix: str, interval: float = 1.0) -> int:
    console = Console()
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            for now, before in readings(url, prefix, interval):
                live.update(render(url, now, before), refresh=True)
    except KeyboardInterrupt:
        return 0
    return 0
