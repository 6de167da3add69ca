"""The tap: what a running router does with each event, streamed to whoever asks.

Zero cost when nobody taps: the hot path checks `Tap.subscribers` (an empty list) once
per request or loop turn and goes on as before. While someone taps, each request is
traced: a batch is run through the pipeline one event at a time, so every outgoing
record is known to come from its event (the records and counters are the same as
for the whole batch). A slow tap never slows ingest: each subscriber has a bounded
buffer, and what does not fit is counted and told to that subscriber.

With several workers each one also serves its own tap on a unix socket in its worker
directory; the worker that takes a `GET /__tap__` subscribes to every other worker's
socket and merges their lines into its answer (`router/handlers/admin.py`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from ..enrich.flow import now_ms
from ..events import MetricsBody
from ..fxa_fields import client_metrics
from ..mapping import FLOW_BEGIN, FORM_TYPES, Pipeline, RequestInfo, ServerItem
from ..records import (
    KINDS,
    ActivityEvent,
    ClientMetrics,
    FlowEvent,
    Kind,
    Record,
    RecordBatch,
    VwoConversion,
)

# Lines a subscriber may have waiting; beyond it they are dropped and counted.
BUFFER_LINES = 10_000
SOCKET_NAME = "tap.sock"


# -- the lines of the stream ------------------------------------------------------------------


class TapHello(Struct, tag="hello", tag_field="type"):
    """The first line: every listed worker is subscribed from here on."""

    workers: list[int]


class TapEvent(Struct, tag="event", tag_field="type", kw_only=True, omit_defaults=True):
    """One incoming event, the name looked up and the rule that matched (None: no rule)."""

    worker: int
    time: int
    endpoint: str
    event: str
    rule: str | None
    # The batch was refused whole (its flow did not verify, expired, ...): why.
    dropped: str | None = None


class TapRecord(Struct, tag="record", tag_field="type", kw_only=True):
    """One outgoing record, for one sink, and the incoming event it was made from."""

    worker: int
    time: int
    endpoint: str
    event: str
    sink: str
    kind: Kind
    record: dict[str, Any]


class TapRejected(Struct, tag="rejected", tag_field="type", kw_only=True):
    """A refused request: its status, reason and the field path at fault."""

    worker: int
    time: int
    endpoint: str
    status: int
    reason: str
    path: str | None
    message: str


class TapDropped(Struct, tag="dropped", tag_field="type"):
    """Lines this subscriber has missed so far (its buffer was full)."""

    count: int


TapLine = TapHello | TapEvent | TapRecord | TapRejected | TapDropped

_encode = msgspec.json.Encoder().encode
line_decoder = msgspec.json.Decoder(TapLine)


def encode_line(line: TapLine) -> bytes:
    return _encode(line) + b"\n"


# -- subscribers ------------------------------------------------------------------------------


class TapFilter(Struct, frozen=True, kw_only=True):
    """What one subscriber wants to see."""

    event: str | None = None
    kind: Kind | None = None
    sink: str | None = None
    rejected: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> TapFilter:
        """From `/__tap__`'s query; ValueError names the bad parameter."""
        kind = query.get("kind") or None
        if kind is not None and kind not in KINDS:
            raise ValueError("kind")
        rejected = query.get("rejected", "0").lower()
        if rejected not in ("0", "1", "true", "false", ""):
            raise ValueError("rejected")
        return cls(
            event=query.get("event") or None,
            kind=kind,
            sink=query.get("sink") or None,
            rejected=rejected in ("1", "true"),
        )

    def query(self) -> dict[str, str]:
        """The inverse of `from_query` (a worker passes its client's filter to the others)."""
        out = {k: v for k, v in (("event", self.event), ("kind", self.kind), ("sink", self.sink))}
        found = {k: v for k, v in out.items() if v}
        if self.rejected:
            found["rejected"] = "1"
        return found


class Subscriber:
    """One tap client: a bounded buffer of encoded lines and a count of what did not fit."""

    def __init__(self, filters: TapFilter, size: int = BUFFER_LINES) -> None:
        self.filters = filters
        self.size = size
        self.lines: deque[bytes] = deque()
        self.dropped = 0
        # Drops other workers reported for this subscriber (their own buffers were full).
        self.remote_dropped: dict[int, int] = {}
        self._told = 0
        self.wake = asyncio.Event()
        self._match = re.compile(fnmatch.translate(filters.event)).match if filters.event else None

    def wants_event(self, name: str) -> bool:
        return not self.filters.rejected and (self._match is None or bool(self._match(name)))

    def wants_record(self, event: str, sink: str, kind: str) -> bool:
        f = self.filters
        return (
            self.wants_event(event)
            and (f.sink is None or f.sink == sink)
            and (f.kind is None or f.kind == kind)
        )

    def offer(self, line: bytes) -> None:
        if len(self.lines) >= self.size:
            self.dropped += 1
        else:
            self.lines.append(line)
        self.wake.set()

    def note_remote_drops(self, worker: int, count: int) -> None:
        self.remote_dropped[worker] = count
        self.wake.set()

    def take(self) -> bytes:
        """Everything waiting, and a `dropped` line first when the count went up."""
        self.wake.clear()
        out = []
        total = self.dropped + sum(self.remote_dropped.values())
        if total != self._told:
            self._told = total
            out.append(encode_line(TapDropped(total)))
        out.extend(self.lines)
        self.lines.clear()
        return b"".join(out)


# -- the process's tap ------------------------------------------------------------------------


def record_name(record: Record | dict[str, Any]) -> str:
    """The name a record goes by at its destination (for text output)."""
    data = record if isinstance(record, dict) else msgspec.structs.asdict(record)
    for key in ("event_type", "event", "name"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return "-"


def _lookup_name(event: str, initial_view: str | None) -> str:
    """The name the pipeline looks up for an incoming event (`Pipeline.process_batch`)."""
    if event == "loaded":
        return f"flow.performance.{initial_view}"
    if event.startswith("flow.timing."):
        return event[: event.rfind(".")]
    return event


class Tap:
    """The subscribers of one process and the tracing the hot path does only for them."""

    def __init__(self, plan: Callable[[], Iterable[tuple[str, frozenset[str]]]]) -> None:
        # Sink names and the kinds each takes, asked when tracing (the dispatcher's).
        self.plan = plan
        self.subscribers: list[Subscriber] = []
        self.worker = 0
        # With several workers: this worker's tap socket, and the directory of them all.
        self.socket: Path | None = None
        self.peer_root: Path | None = None
        self.buffer_lines = BUFFER_LINES
        # Shutting down: streams end so that they do not hold up the drain.
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sub in self.subscribers:
            sub.wake.set()

    def subscribe(self, sub: Subscriber) -> None:
        self.subscribers.append(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def peers(self) -> list[Path]:
        """The other workers' tap sockets (a dead worker's stale one fails to connect)."""
        if self.peer_root is None:
            return []
        return sorted(p for p in self.peer_root.glob(f"worker-*/{SOCKET_NAME}") if p != self.socket)

    # -- publishing ---------------------------------------------------------------------------

    def _publish(
        self,
        endpoint: str,
        time: int,
        events: Sequence[tuple[str, str | None, RecordBatch]],
        dropped: str | None = None,
    ) -> None:
        """(event name, rule, the records made from it) for every event of one request."""
        plan = list(self.plan())
        for name, rule, batch in events:
            wanting = [sub for sub in self.subscribers if sub.wants_event(name)]
            if not wanting:
                continue
            # Each line is encoded once, however many subscribers take it.
            head = TapEvent(worker=self.worker, time=time, endpoint=endpoint, event=name, rule=rule)
            if dropped:
                head.dropped = dropped
            _offer(wanting, encode_line(head))
            for sink, kinds in plan:
                for kind in KINDS:
                    records = getattr(batch, kind) if kind in kinds else ()
                    takers = [s for s in wanting if s.wants_record(name, sink, kind)]
                    for record in records if takers else ():
                        line = TapRecord(
                            worker=self.worker,
                            time=time,
                            endpoint=endpoint,
                            event=name,
                            sink=sink,
                            kind=kind,
                            record=msgspec.to_builtins(record),
                        )
                        _offer(takers, encode_line(line))

    def rejected(self, endpoint: str, status: int, reason: str, path: str | None, msg: str) -> None:
        line = encode_line(
            TapRejected(
                worker=self.worker,
                time=now_ms(),
                endpoint=endpoint,
                status=status,
                reason=reason,
                path=path,
                message=msg,
            )
        )
        _offer([sub for sub in self.subscribers if sub.filters.rejected], line)

    # -- tracing: called only while `subscribers` is not empty ----------------------------------

    def metrics_batch(self, pipeline: Pipeline, body: MetricsBody, req: RequestInfo) -> RecordBatch:
        """`Pipeline.process_batch`, one event at a time, published."""
        match = pipeline.rules.match
        problem = pipeline.signer.check(body.flowId, body.flowBeginTime, req.received)
        view = body.initialView
        if problem is not None:
            out = pipeline.process_batch(body, req)  # counts the refusal once
            traced = [(e.type, _rule(match, _lookup_name(e.type, view)), out) for e in body.events]
            self._publish("/metrics", req.received, traced, problem.value)
            return out
        out = RecordBatch()
        if body.isSampledUser:
            # One `client.metrics` record for the whole body, as process_batch makes it.
            out.client_metrics.append(client_metrics(body, req.received, req.user_agent))
        traced = []
        for event in body.events:
            one = msgspec.structs.replace(body, events=[event], isSampledUser=False)
            part = pipeline.process_batch(one, req)
            _extend(out, part)
            traced.append((event.type, _rule(match, _lookup_name(event.type, view)), part))
        self._publish("/metrics", req.received, traced)
        return out

    def server_events(
        self, pipeline: Pipeline, items: list[ServerItem], received: int
    ) -> RecordBatch:
        """`Pipeline.process_server_events`, one event at a time, published."""
        if not self.subscribers:
            return pipeline.process_server_events(items, received)
        out = RecordBatch()
        traced = []
        for item in items:
            part = pipeline.process_server_events([item], received)
            _extend(out, part)
            traced.append((item.event.event, _rule(pipeline.rules.match, item.event.event), part))
        self._publish("/sidecar/events", received, traced)
        return out

    def request(
        self, pipeline: Pipeline, endpoint: str, names: Sequence[str], batch: RecordBatch
    ) -> RecordBatch:
        """A request of a few named events made in one go (`GET /metrics-flow`), published."""
        if self.subscribers:
            match = pipeline.rules.match
            parts = {name: RecordBatch() for name in names}
            for kind in KINDS:
                for record in getattr(batch, kind):
                    part = parts[_source(record, names, match)]
                    getattr(part, kind).append(record)
            traced = [(n, _rule(match, n), parts[n]) for n in names]
            self._publish(endpoint, now_ms(), traced)
        return batch


def begin_names(form_type: str | None) -> tuple[str, ...]:
    """The events `GET /metrics-flow` emits: `flow.begin` and its form type's screen."""
    screen = FORM_TYPES.get(form_type or "")
    return (FLOW_BEGIN, screen[0]) if screen else (FLOW_BEGIN,)


def _source(record: Record, names: Sequence[str], match: Callable[[str], Any]) -> str:
    """Which of `names` a record was made from (by the name its rule or view gives it)."""
    if isinstance(record, ClientMetrics):
        return names[0]  # the whole sampled body, not one event's
    for name in names:
        if isinstance(record, ActivityEvent):
            if record.event == name:
                return name
            continue
        if isinstance(record, FlowEvent):
            view = f"flow.{name[7:]}.view" if name.startswith("screen.") else name
            if record.event == view:
                return name
            continue
        mapping = match(name)
        if mapping is None:
            continue
        if isinstance(record, VwoConversion):
            if record.name == mapping.vwo:
                return name
        elif record.event_type in (mapping.event_type, *(o.event_type for o in mapping.also)):
            return name
    return names[0]


def _offer(subscribers: list[Subscriber], line: bytes) -> None:
    for sub in subscribers:
        sub.offer(line)


def _rule(match: Callable[[str], Any], name: str) -> str | None:
    mapping = match(name)
    return None if mapping is None else str(mapping.rule)


def _extend(out: RecordBatch, part: RecordBatch) -> None:
    for kind in RecordBatch.__struct_fields__:  # every kind, tapped or not
        getattr(out, kind).extend(getattr(part, kind))
