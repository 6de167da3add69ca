"""mozlog lines: one JSON object a line, written in buffered chunks off the event loop.

Log rotation: `reopen()` (the app calls it on SIGHUP and SIGUSR1) closes the file and
opens its path again, so logrotate can rename the file without `copytruncate`. Writes
and the reopen take one lock in the writer thread: a batch is written whole to the old
file or whole to the new one, never split between them.

Page cache: lines are written once and read, if at all, by a shipper soon after. Every
`drop_cache_mb` written, the sink asks the kernel (posix_fadvise DONTNEED) to write back
and then drop the pages one to four such windows behind the end of the file. The log
then holds a few windows of page cache instead of growing it by its whole size, and new
lines go to pages freed a moment ago: on a VM whose host reclaims idle guest memory,
writing to never-touched pages cost the router a third of its CPU in the batch bench.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import IO, Any, ClassVar

import msgspec
from mypy_extensions import mypyc_attr

from ..config import DROP_CACHE_MB
from ..records import ActivityEvent, AmplitudeEvent, FlowEvent, Record, VwoConversion
from .base import Kind, Sink
from .fxa_format import FxaLines
from .lines import MozLogLine

INFO = 6
# Pieces one writev(2) takes at most (Linux: 1024); a batch has two a kind of record.
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "writev") else 0
# An empty dict: what omit_defaults leaves out, as the mirror of old left out None.
_EMPTY: dict[str, Any] = {}
_replace = msgspec.structs.replace
# Each record type's mozlog `Type`.
_KINDS: dict[type, str] = {
    FlowEvent: "flowEvent",
    AmplitudeEvent: "amplitudeEvent",
    ActivityEvent: "activityEvent",
    VwoConversion: "vwoConversion",
}

log = logging.getLogger(__name__)


# client_metrics.py (and tests) subclass it, and this module may be compiled with mypyc.
@mypyc_attr(allow_interpreted_subclasses=True)
class LogSink(Sink):
    """Writes `flowEvent`, `amplitudeEvent`, `activityEvent` and `vwoConversion` lines.

    `format="mozlog"`: every record in a mozlog envelope; `"fxa"`: as FxA's servers
    write them (see fxa_format.py).
    """

    kinds: ClassVar[frozenset[Kind]] = frozenset({"amplitude", "flow", "vwo", "activity"})

    def __init__(
        self,
        name: str,
        path: str = "-",
        logger: str = "metrics-router",
        format: str = "mozlog",
        drop_cache_mb: int = DROP_CACHE_MB,
    ) -> None:
        super().__init__(name)
        self.format = format
        self.path = path
        self.logger = logger
        # 0: leave the pages to the kernel. Also 0 once the file turns out to be one the
        # kernel does not cache (a pipe, a terminal) or where there is no posix_fadvise.
        self.drop_window = drop_cache_mb << 20 if hasattr(os, "posix_fadvise") else 0
        self._since_drop = 0
        self._drop_ends: list[int] = []  # where the last three advised ranges ended
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder()
        # Records of one request share their property dicts: encode each once (one slot
        # per field, so event and user properties do not evict each other).
        self._memo: dict[str, tuple[object, msgspec.Raw]] = {}
        self._fxa = FxaLines(self.hostname, self.pid, self._fields) if format == "fxa" else None

    async def start(self) -> None:
        if self.path == "-":
            self._file = sys.stdout.buffer
        else:
            self._file = await asyncio.to_thread(self._open)

    def _open(self) -> IO[bytes]:
        # Unbuffered: a batch goes out in one write(2), which O_APPEND places whole at
        # the end, so workers sharing the file never interleave inside a line.
        return open(self.path, "ab", buffering=0)

    async def reopen(self) -> None:
        """Close the file and open its path again (after logrotate renamed it)."""
        if self.path != "-" and self._file is not None:
            await asyncio.to_thread(self._reopen)
            log.info("log sink %s: reopened %s", self.name, self.path)

    def _reopen(self) -> None:
        fresh = self._open()  # first: if it fails, the old file stays in use
        with self._lock:
            old, self._file = self._file, fresh
            self._since_drop, self._drop_ends = 0, []
        if old is not None:
            old.close()

    def _nested(self, slot: str, value: dict[str, Any]) -> msgspec.Raw | None:
        """`value` as a JSON string literal holding its JSON (mozlog nests objects so)."""
        if not value:
            return None
        last = self._memo.get(slot)
        if last is not None and last[0] is value:
            return last[1]
        raw = self._as_string(value)
        self._memo[slot] = (value, raw)
        return raw

    def _as_string(self, value: dict[str, Any]) -> msgspec.Raw:
        encode = self._encoder.encode
        return msgspec.Raw(encode(encode(value).decode()))

    def _fields(self, record: Record) -> tuple[str, Any]:
        if isinstance(record, FlowEvent):
            return "flowEvent", record
        if isinstance(record, AmplitudeEvent):
            # The record itself, its nested objects swapped for their JSON strings: msgspec
            # neither checks types on replace nor copies, so no second Struct is built.
            return "amplitudeEvent", _replace(
                record,
                event_properties=self._nested("event", record.event_properties) or _EMPTY,
                user_properties=self._nested("user", record.user_properties) or _EMPTY,
                insert_id=None,
            )
        if isinstance(record, ActivityEvent):
            return "activityEvent", record
        assert isinstance(record, VwoConversion)
        return "vwoConversion", self._vwo_fields(record)

    def _vwo_fields(self, record: Record) -> dict[str, Any]:
        """A VwoConversion's fields, its properties as a JSON string, without the Nones."""
        assert isinstance(record, VwoConversion)
        fields = msgspec.structs.asdict(record)
        fields["properties"] = self._nested("vwo", record.properties)
        return {k: v for k, v in fields.items() if v is not None}

    def _head(self, kind: str, now: int) -> bytes:
        """Everything of a line before its Fields: the same for a whole batch of one kind."""
        envelope = MozLogLine(now, self.logger, kind, self.hostname, self.pid, "2.0", INFO, None)
        encoded = self._encoder.encode(envelope)
        return encoded[: -len(b"null}")]

    def encode(self, records: Sequence[Record]) -> bytes:
        """The lines for a batch, newline-terminated."""
        return b"".join(self.pieces(records))

    def pieces(self, records: Sequence[Record]) -> list[bytes | memoryview]:
        """The lines for a batch in pieces that, joined, are `encode`'s bytes (written with
        one writev(2), so the batch is never copied into one buffer)."""
        now = time.time_ns()
        if self._fxa is not None:
            return [self._fxa.encode(records, lambda kind: self._head(kind, now))]
        # Records come in runs of one type (a request's flow events, then its Amplitude
        # events). The runs of each kind are gathered and encoded with one `encode_lines`
        # call per kind, over the records themselves; the envelope is spliced around every
        # line with one `replace` (an encoded line holds no raw newline). So a batch's lines
        # are grouped by kind, each kind in the order given: a batch of 1-event requests
        # costs two encoder calls, not two a request. No Struct or tuple is built per flow
        # or activity record.
        kinds: dict[str, list[Any]] = {}
        strings: dict[int, Any] = {}
        for cls, group in groupby(records, type):
            same = kinds.setdefault(_KINDS[cls], [])
            if cls is AmplitudeEvent:
                self._amplitude_fields(group, strings, same)
            elif cls is VwoConversion:
                same.extend(self._vwo_fields(r) for r in group)
            else:
                same.extend(group)
        parts: list[bytes | memoryview] = []
        for kind, same in kinds.items():
            head = self._head(kind, now)
            # "a\nb\n" -> HEAD "a}\nHEAD b}\nHEAD", the last HEAD cut off (a view: no copy).
            lines = self._encoder.encode_lines(same).replace(b"\n", b"}\n" + head)
            parts.append(head)
            parts.append(memoryview(lines)[: -len(head)])
        return parts

    def _amplitude_fields(
        self, run: Iterable[Any], strings: dict[int, Any], out: list[Any]
    ) -> None:
        """Append each record (an AmplitudeEvent) to `out` with its nested objects as JSON
        strings and no insert_id; `strings` holds the batch's dicts already encoded, by id."""
        append = out.append
        # A request's records share a few dicts (its user properties, one event-properties
        # dict per mapping): each is encoded once per batch. The records hold the dicts,
        # so their ids stay theirs while the batch is encoded. Looked up inline, and only
        # when a record's dict is not the one before's: this loop runs once per record.
        known = strings.get
        as_string = self._as_string
        last_event = last_user = None
        event: Any = _EMPTY
        user: Any = _EMPTY
        for record in run:
            props = record.event_properties
            if props is not last_event:
                last_event = props
                event = known(id(props))
                if event is None:
                    event = strings[id(props)] = as_string(props) if props else _EMPTY
            props = record.user_properties
            if props is not last_user:
                last_user = props
                user = known(id(props))
                if user is None:
                    user = strings[id(props)] = as_string(props) if props else _EMPTY
            append(_replace(record, event_properties=event, user_properties=user, insert_id=None))

    def _write(self, pieces: Sequence[bytes | memoryview]) -> None:
        with self._lock:
            file = self._file
            assert file is not None
            size = sum(map(len, pieces))
            done = 0
            if self.path != "-" and 0 < len(pieces) <= _IOV_MAX:
                # One system call for the batch; O_APPEND places it whole at the end.
                done = os.writev(file.fileno(), pieces)
            if done < size:  # stdout, or a short write (a full disk, a signal)
                view = memoryview(b"".join(pieces))[done:]
                while view:
                    written = file.write(view)
                    view = view[written or 0 :]
                file.flush()
            if self.drop_window:
                self._written(file, size)

    def _written(self, file: IO[bytes], size: int) -> None:
        """Count `size` bytes just written; past a window since the last drop, drop again."""
        self._since_drop += size
        if self._since_drop >= self.drop_window:
            self._since_drop = 0
            self._drop_behind(file)

    def _drop_behind(self, file: IO[bytes]) -> None:
        """Advise DONTNEED from three ranges' ends ago to a window behind the file's end."""
        # DONTNEED starts the writeback of dirty pages and drops clean ones: every page is
        # in three ranges in a row, whatever the batch size, so a page still dirty at the
        # first is dropped by a later one. The newest window stays cached for a shipper.
        try:
            end = file.tell() - self.drop_window
            if end > 0:
                ends = self._drop_ends
                start = ends[-3] if len(ends) >= 3 else 0
                os.posix_fadvise(file.fileno(), start, end - start, os.POSIX_FADV_DONTNEED)
                ends.append(end)
                del ends[:-3]
        except (OSError, ValueError) as exc:
            self.drop_window = 0
            # A pipe or a terminal (ESPIPE, EINVAL) says nothing; anything else once.
            if getattr(exc, "errno", None) not in (errno.ESPIPE, errno.EINVAL):
                log.warning("log sink %s: page-cache dropping off: %s", self.name, exc)

    async def send(self, records: Sequence[Record]) -> None:
        await asyncio.to_thread(self._write, self.pieces(records))

    async def aclose(self) -> None:
        if self._file is not None and self.path != "-":
            await asyncio.to_thread(self._close)
        self._file = None

    def _close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
