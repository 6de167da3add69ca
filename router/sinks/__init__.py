"""Pluggable sinks, chosen by name in the config (`[sinks.<name>]`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..config import (
    AmplitudeSinkSettings,
    ClientMetricsSinkSettings,
    JetStreamSinkSettings,
    LogSinkSettings,
    Settings,
    SinkSettings,
    VwoSinkSettings,
    enabled_sinks,
)
from ..dispatch.deadletter import DeadLetters
from .amplitude import AmplitudeSink
from .base import Sink
from .client_metrics import ClientMetricsSink
from .log import LogSink
from .memory import MemorySink
from .retry import Backoff
from .vwo import VwoSink

SinkFactory = Callable[[str, SinkSettings, Settings, DeadLetters], Sink]


def _log(name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters) -> Sink:
    assert isinstance(conf, LogSinkSettings)
    return LogSink(name, conf.path, conf.logger, conf.format, conf.drop_cache_mb)


def _client_metrics(
    name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters
) -> Sink:
    assert isinstance(conf, ClientMetricsSinkSettings)
    return ClientMetricsSink(name, conf.path, conf.drop_cache_mb)


def _memory(name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters) -> Sink:
    return MemorySink(name)


def _amplitude(name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters) -> Sink:
    assert isinstance(conf, AmplitudeSinkSettings)
    return AmplitudeSink(
        name,
        api_key=conf.api_key,
        hmac_key=conf.hmac_key,
        url=conf.url,
        identify_url=conf.identify_url,
        max_batch_bytes=conf.max_batch_bytes,
        max_retry_seconds=conf.max_retry_seconds,
        concurrency=conf.concurrency,
        request_timeout_seconds=conf.request_timeout_seconds,
        backoff=Backoff(conf.retry_base_ms / 1000, conf.retry_cap_ms / 1000),
        throttle_pause_seconds=conf.throttle_pause_seconds,
        min_id_length=conf.min_id_length,
    )


def _vwo(name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters) -> Sink:
    assert isinstance(conf, VwoSinkSettings)
    return VwoSink(
        name,
        account_id=conf.account_id,
        sdk_key=conf.sdk_key,
        url=conf.url,
        settings_path=conf.settings_path,
        batch_events=conf.batch_events,
        authorization_header=conf.authorization_header,
        user_field=conf.user_field,
        concurrency=conf.concurrency,
        request_timeout_seconds=conf.request_timeout_seconds,
        max_retries=conf.max_retries,
        backoff=Backoff(conf.retry_base_ms / 1000, conf.retry_cap_ms / 1000),
        sdk_name=conf.sdk_name,
        sdk_version=conf.sdk_version,
    )


def _jetstream(name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters) -> Sink:
    from .jetstream import JetStreamSink

    assert isinstance(conf, JetStreamSinkSettings)
    return JetStreamSink(name, conf)


FACTORIES: dict[str, SinkFactory] = {
    "log": _log,
    "client_metrics": _client_metrics,
    "memory": _memory,
    "amplitude": _amplitude,
    "vwo": _vwo,
    "jetstream": _jetstream,
}


def build_sinks(
    settings: Settings, deadletters: DeadLetters, factories: Mapping[str, SinkFactory] = FACTORIES
) -> list[tuple[Sink, SinkSettings]]:
    """One sink per enabled `[sinks.<name>]` section, with its settings, by `factories`."""
    return [
        (factories[name](name, conf, settings, deadletters), conf)
        for name, conf in enabled_sinks(settings)
    ]


__all__ = [
    "FACTORIES",
    "AmplitudeSink",
    "LogSink",
    "MemorySink",
    "Sink",
    "SinkFactory",
    "VwoSink",
    "build_sinks",
]
