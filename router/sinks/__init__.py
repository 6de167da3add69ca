"""Pluggable sinks, chosen by name in the config (`[sinks.<name>]`)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import JetStreamSinkSettings, LogSinkSettings, Settings, SinkSettings, enabled_sinks
from .base import Sink
from .log import LogSink
from .memory import MemorySink

SinkFactory = Callable[[str, SinkSettings, Settings], Sink]


def _log(name: str, conf: SinkSettings, settings: Settings) -> Sink:
    assert isinstance(conf, LogSinkSettings)
    return LogSink(name, conf.path, conf.logger)


def _memory(name: str, conf: SinkSettings, settings: Settings) -> Sink:
    return MemorySink(name)


def _jetstream(name: str, conf: SinkSettings, settings: Settings) -> Sink:
    from .jetstream import JetStreamSink

    assert isinstance(conf, JetStreamSinkSettings)
    return JetStreamSink(name, conf)


FACTORIES: dict[str, SinkFactory] = {"log": _log, "memory": _memory, "jetstream": _jetstream}


def build_sinks(settings: Settings) -> list[tuple[Sink, SinkSettings]]:
    """One sink per enabled `[sinks.<name>]` section, with its settings."""
    return [(FACTORIES[name](name, conf, settings), conf) for name, conf in enabled_sinks(settings)]


__all__ = ["FACTORIES", "LogSink", "MemorySink", "Sink", "build_sinks"]
