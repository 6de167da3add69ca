"""mozlog lines: one JSON object a line, written in buffered chunks off the event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, ClassVar

import msgspec

from ..records import AmplitudeEvent, FlowEvent, Record, VwoConversion
from .base import Kind, Sink

INFO = 6


class MozLogLine(msgspec.Struct):
    Timestamp: int
    Logger: str
    Type: str
    Hostname: str
    Pid: int
    EnvVersion: str
    Severity: int
    Fields: Any


class AmplitudeFields(msgspec.Struct, omit_defaults=True, kw_only=True):
    """An Amplitude record as mozlog Fields: nested objects become JSON strings."""

    event_type: str
    time: int
    user_id: str | None = None
    device_id: str | None = None
    session_id: int | None = None
    app_version: str | None = None
    language: str | None = None
    country: str | None = None
    region: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    device_model: str | None = None
    event_properties: str | None = None
    user_properties: str | None = None


class LogSink(Sink):
    """Writes `flowEvent`, `amplitudeEvent` and `vwoConversion` mozlog lines."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"amplitude", "flow", "vwo"})

    def __init__(self, name: str, path: str = "-", logger: str = "metrics-router") -> None:
        super().__init__(name)
        self.path = path
        self.logger = logger
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self._file: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder()
        # Records of one batch share their property dicts: encode each once.
        self._memo_obj: object = None
        self._memo_str: str | None = None

    async def start(self) -> None:
        if self.path == "-":
            self._file = sys.stdout.buffer
        else:
            self._file = await asyncio.to_thread(open, self.path, "ab", buffering=1 << 16)

    def _nested(self, value: dict[str, Any]) -> str | None:
        if not value:
            return None
        if value is self._memo_obj:
            return self._memo_str
        text = self._encoder.encode(value).decode()
        self._memo_obj, self._memo_str = value, text
        return text

    def _fields(self, record: Record) -> tuple[str, Any]:
        if isinstance(record, FlowEvent):
            return "flowEvent", record
        if isinstance(record, AmplitudeEvent):
            return "amplitudeEvent", AmplitudeFields(
                event_type=record.event_type,
                time=record.time,
                user_id=record.user_id,
                device_id=record.device_id,
                session_id=record.session_id,
                app_version=record.app_version,
                language=record.language,
                country=record.country,
                region=record.region,
                os_name=record.os_name,
                os_version=record.os_version,
                device_model=record.device_model,
                event_properties=self._nested(record.event_properties),
                user_properties=self._nested(record.user_properties),
            )
        assert isinstance(record, VwoConversion)
        fields = msgspec.structs.asdict(record)
        fields["properties"] = self._nested(record.properties)
        return "vwoConversion", {k: v for k, v in fields.items() if v is not None}

    def encode(self, records: Sequence[Record]) -> bytes:
        """The mozlog lines for a batch, newline-terminated."""
        now = time.time_ns()
        lines = []
        for record in records:
            kind, fields = self._fields(record)
            lines.append(
                MozLogLine(now, self.logger, kind, self.hostname, self.pid, "2.0", INFO, fields)
            )
        return self._encoder.encode_lines(lines)

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()

    async def send(self, records: Sequence[Record]) -> None:
        await asyncio.to_thread(self._write, self.encode(records))

    async def aclose(self) -> None:
        if self._file is not None and self.path != "-":
            await asyncio.to_thread(self._file.close)
        self._file = None
