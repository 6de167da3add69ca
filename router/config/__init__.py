"""Settings: one TOML file plus METRICS_ROUTER_<SECTION>_<KEY> environment overrides.

Every key is validated at start-up and every problem is reported at once. Settings are
frozen: an override (command line, a worker's own directory) makes a new value with
`msgspec.structs.replace` (`override`), so no part of the process sees another's edit.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ..enrich.locale import FXA_DEFAULT_LANGUAGE, FXA_SUPPORTED_LANGUAGES
from ..errors import ConfigError, Problem
from .sections import Section, check_keys, overlay_env

Port = Annotated[int, Meta(ge=0, le=65535)]
NonNegative = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(ge=1)]
# The file sinks' page-cache window, MiB (router/sinks/log.py).
DROP_CACHE_MB = 16
ClientId = Annotated[str, Meta(pattern=r"^[0-9a-f]{16}$")]


class ServerSettings(Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    # How many proxies in front of us append to X-Forwarded-For; the client
    # address is the entry that many hops from the right (FxA's clientAddressDepth
    # is trusted_proxies + 1; invalid addresses are skipped as there).
    trusted_proxies: NonNegative = 0
    max_body_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 256 * 1024
    max_events_per_batch: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    shutdown_timeout_seconds: Annotated[float, Meta(gt=0)] = 30.0
    # More than 1: that many worker processes share the port (see docs/scaling.md).
    workers: Annotated[int, Meta(ge=1, le=256)] = 1
    # With several workers, each claims `<worker_dir>/worker-<k>` for its own state
    # (spool, counter snapshots); a restarted set of workers picks the same ones up.
    worker_dir: str = "workers"
    # A sink without a spool that is behind: how long ingest waits for room in its queue
    # before answering 503 (clients are slowed, not refused); 0: refuse at once.
    backpressure_wait_ms: Annotated[int, Meta(ge=0, le=600_000)] = 5000


class FlowSettings(Section, frozen=True):
    # Empty: a random key is made at start (flow ids then verify only in this process).
    key: str = ""
    expiry_seconds: Positive = 7200
    max_event_offset_seconds: Positive = 172800
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    clients: dict[ClientId, str] = msgspec.field(default_factory=dict)
    # Flow-event `locale`: the best match of Accept-Language among these (i18n-abide).
    supported_locales: list[str] = msgspec.field(
        default_factory=lambda: list(FXA_SUPPORTED_LANGUAGES)
    )
    default_locale: str = FXA_DEFAULT_LANGUAGE
    # CORS preflights of /metrics-flow: how long a browser may cache the answer.
    cors_max_age_seconds: NonNegative = 600

    def __post_init__(self) -> None:
        known = {s.lower() for s in self.supported_locales}
        if self.default_locale.lower() not in known:
            raise ValueError(f"default_locale {self.default_locale!r} not in supported_locales")


class GeoSettings(Section, frozen=True):
    # A MaxMind City database (GeoLite2-City / GeoIP2-City .mmdb); empty: the embedded
    # GeoLite2 City database of the maxminddb-geolite2 package.
    database: str = ""
    enabled: bool = True
    # Client addresses whose location is kept in memory (bounded).
    cache_size: Annotated[int, Meta(ge=16)] = 65536


class AmplitudeSettings(Section, frozen=True):
    # The server version whose last "major.minor" is Amplitude's app_version
    # (FxA: its train); empty: this package's version.
    app_version: str = ""


class RulesSettings(Section, frozen=True):
    # Empty: the bundled router/rules/ directory (package data).
    paths: list[str] = msgspec.field(default_factory=list)
    cache_size: Annotated[int, Meta(ge=16)] = 65536


class SinkSettings(Section, frozen=True):
    enabled: bool = True
    # In-memory queue between ingest and this sink; beyond it records are
    # counted and logged as dropped (queue_full).
    queue_size: Positive = 200_000
    batch_size: Positive = 1000


class LogSinkSettings(SinkSettings, frozen=True):
    path: str = "-"
    logger: str = "metrics-router"
    flush_interval_ms: NonNegative = 50
    # Lines are cheap to encode: big batches keep the writer's share of the event loop
    # (one turn per batch) from limiting throughput under load.
    batch_size: Positive = 4_000
    # "mozlog": every record in a mozlog envelope; "fxa": the lines FxA's servers write
    # (flowEvent as a bare JSON line with op and v, amplitudeEvent mozlog with op).
    format: Literal["mozlog", "fxa"] = "mozlog"
    # Pages of the file more than this many MiB behind its end are written back and
    # dropped from the page cache (after each such window written); 0: left to the kernel.
    drop_cache_mb: NonNegative = DROP_CACHE_MB


class ClientMetricsSinkSettings(SinkSettings, frozen=True):
    """FxA's `client.metrics` lines: the raw bodies of sampled users (isSampledUser)."""

    path: str = "-"
    flush_interval_ms: NonNegative = 50
    drop_cache_mb: NonNegative = DROP_CACHE_MB  # as [sinks.log]'s


class MemorySinkSettings(SinkSettings, frozen=True):
    pass


def _require(section: Section, *names: str) -> None:
    missing = [n for n in names if not getattr(section, n)]
    if missing:
        raise ValueError(f"{', '.join(missing)} required")


class AmplitudeSinkSettings(SinkSettings, frozen=True):
    # Both required (checked in __post_init__; defaults only keep the Struct kw-only).
    api_key: str = ""
    # HMAC-SHA256 key for user ids and insert ids; required so raw uids never leave.
    hmac_key: str = ""
    url: str = "https://api2.amplitude.com/batch"
    identify_url: str = "https://api2.amplitude.com/identify"
    batch_size: Annotated[int, Meta(ge=1, le=2000)] = 1000
    # Stay under the HTTP V2 limit (1 MB) even when `url` is /2/httpapi.
    max_batch_bytes: Annotated[int, Meta(ge=1024)] = 900_000
    flush_interval_ms: NonNegative = 1000
    max_retry_seconds: Annotated[float, Meta(ge=0)] = 3600.0
    concurrency: Annotated[int, Meta(ge=1, le=64)] = 4
    request_timeout_seconds: Annotated[float, Meta(gt=0)] = 30.0
    retry_base_ms: Positive = 500
    retry_cap_ms: Positive = 60_000
    throttle_pause_seconds: Annotated[float, Meta(ge=0)] = 30.0
    min_id_length: Annotated[int, Meta(ge=1)] | None = None

    def __post_init__(self) -> None:
        _require(self, "api_key", "hmac_key")


class VwoSinkSettings(SinkSettings, frozen=True):
    # All three required (checked in __post_init__).
    account_id: NonNegative = 0
    sdk_key: str = ""
    settings_path: str = ""
    url: str = "https://dev.visualwebsiteoptimizer.com"
    batch_size: Annotated[int, Meta(ge=1, le=5000)] = 100
    # false: one `/events/t` request per conversion.
    batch_events: bool = True
    # Send the SDK key as the Authorization header of batch requests.
    authorization_header: bool = True
    # "uid": the conversion's user id; any other name: that conversion property
    # (which the rule must copy with `vwo_fields`).
    user_field: str = "uid"
    flush_interval_ms: NonNegative = 1000
    concurrency: Annotated[int, Meta(ge=1, le=64)] = 2
    request_timeout_seconds: Annotated[float, Meta(gt=0)] = 30.0
    max_retries: NonNegative = 3
    retry_base_ms: Positive = 2000
    retry_cap_ms: Positive = 60_000
    sdk_name: str = "metrics-router"
    sdk_version: str = ""

    def __post_init__(self) -> None:
        _require(self, "account_id", "sdk_key", "settings_path")


class JetStreamSinkSettings(SinkSettings, frozen=True):
    servers: list[str] = msgspec.field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    stream: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]+$")] = "METRICS"
    # The subject each destination's records are published on (and forwarded from).
    subjects: dict[Literal["amplitude", "vwo"], str] = msgspec.field(
        default_factory=lambda: {"amplitude": "metrics.amplitude", "vwo": "metrics.vwo"}
    )
    replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    # JetStream drops a message whose Nats-Msg-Id it saw within this window.
    duplicate_window_seconds: Annotated[float, Meta(gt=0)] = 120.0
    # HMAC key for Amplitude insert ids (required); use [sinks.amplitude] hmac_key.
    id_key: str = ""
    publish_timeout_seconds: Annotated[float, Meta(gt=0)] = 10.0
    # Publishing a batch is tried this often before `send` fails (and the chunk stays spooled).
    publish_attempts: Annotated[int, Meta(ge=1)] = 3
    # Forwarders: messages fetched at a time, redelivery wait and limits.
    fetch_batch: Annotated[int, Meta(ge=1, le=10_000)] = 500
    ack_wait_seconds: Annotated[float, Meta(gt=0)] = 60.0
    retry_delay_seconds: Annotated[float, Meta(ge=0)] = 5.0
    # 0: redeliver until delivered; N: dead-letter a message after N failed deliveries.
    max_deliver: NonNegative = 0

    def __post_init__(self) -> None:
        if not self.id_key:
            raise ValueError("id_key required")
        if not self.subjects:
            raise ValueError("subjects: at least one destination required")


class SinksSettings(Section, frozen=True):
    log: LogSinkSettings | None = None
    client_metrics: ClientMetricsSinkSettings | None = None
    memory: MemorySinkSettings | None = None
    amplitude: AmplitudeSinkSettings | None = None
    vwo: VwoSinkSettings | None = None
    jetstream: JetStreamSinkSettings | None = None


class SidecarSettings(Section, frozen=True):
    # Bearer token of the back-end services; empty: every sidecar request is refused (401).
    token: str = ""
    max_events_per_batch: Annotated[int, Meta(ge=1, le=10_000)] = 100


class ContextSettings(Section, frozen=True):
    # "host:port" of memcached servers (sharded by consistent hashing); empty: in memory.
    memcached: list[str] = msgspec.field(default_factory=list)
    ttl_seconds: Positive = 7200
    # Per memcached operation; beyond it the event goes on without its stashed context.
    timeout_ms: Annotated[int, Meta(ge=1, le=10_000)] = 100
    memory_max_entries: Positive = 100_000


class StatsSettings(Section, frozen=True):
    # "host:port" of a statsd / DogStatsD server (UDP); empty: no export.
    statsd: str = ""
    prefix: str = "metrics_router"
    # For incr() calls that pass no sample_rate.
    default_sample_rate: Annotated[float, Meta(gt=0, le=1)] = 0.1


class SpoolSettings(Section, frozen=True):
    """The on-disk backlog of durable sinks (`<path>/<sink>.db`); see docs/durability.md."""

    path: str = "var/spool"
    # Payload bytes per sink spool; beyond it ingest answers 503 with Retry-After.
    max_bytes: Annotated[int, Meta(ge=4096)] = 1 << 30
    # true: every commit is fsynced (survives power loss, not only kill -9).
    fsync: bool = False
    # true: answer 200 only once the request's events are on disk.
    strict: bool = False
    # Write-behind: a chunk not delivered within this is written to the spool.
    commit_interval_ms: Annotated[int, Meta(ge=1, le=60_000)] = 200
    # Records a durable sink may hold in memory; beyond it new work goes to disk only.
    memory_records: Positive = 10_000
    retry_after_seconds: Positive = 5
    # `/__heartbeat__` fails while the file system under `path` has less free space.
    min_free_disk_mb: NonNegative = 16


class ForwardSettings(Section, frozen=True):
    """`metrics-router forward`: where its Dockerflow endpoints listen (docs/scaling.md)."""

    host: str = "127.0.0.1"
    # Not the router's 8080, so a router and its forwarders can share a host; 0: any free port.
    port: Port = 8081


class DeadLetterSettings(Section, frozen=True):
    # Empty: `<spool path>/deadletter.db`.
    path: str = ""


class AdminSettings(Section, frozen=True):
    # Bearer token of operators (`metrics-router tap`); empty: /__tap__ refuses everyone.
    token: str = ""


class Settings(Section, frozen=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    flow: FlowSettings = msgspec.field(default_factory=FlowSettings)
    geo: GeoSettings = msgspec.field(default_factory=GeoSettings)
    amplitude: AmplitudeSettings = msgspec.field(default_factory=AmplitudeSettings)
    rules: RulesSettings = msgspec.field(default_factory=RulesSettings)
    sinks: SinksSettings = msgspec.field(default_factory=SinksSettings)
    spool: SpoolSettings = msgspec.field(default_factory=SpoolSettings)
    deadletter: DeadLetterSettings = msgspec.field(default_factory=DeadLetterSettings)
    sidecar: SidecarSettings = msgspec.field(default_factory=SidecarSettings)
    context: ContextSettings = msgspec.field(default_factory=ContextSettings)
    stats: StatsSettings = msgspec.field(default_factory=StatsSettings)
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    forward: ForwardSettings = msgspec.field(default_factory=ForwardSettings)

    def __post_init__(self) -> None:
        if not any(_enabled_sinks(self.sinks)):
            # The embedded default: mozlog lines to stdout (set once, while being built).
            sinks = msgspec.structs.replace(self.sinks, log=LogSinkSettings())
            msgspec.structs.force_setattr(self, "sinks", sinks)


def override(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """`settings` with some keys of some sections replaced, e.g. `server={"port": 0}`."""
    changed = {
        name: msgspec.structs.replace(getattr(settings, name), **keys)
        for name, keys in sections.items()
    }
    return msgspec.structs.replace(settings, **changed)


def deadletter_path(settings: Settings) -> Path:
    return Path(settings.deadletter.path or Path(settings.spool.path) / "deadletter.db")


def _enabled_sinks(sinks: SinksSettings) -> Iterator[tuple[str, SinkSettings]]:
    for name in sinks.__struct_fields__:
        value = getattr(sinks, name)
        if isinstance(value, SinkSettings) and value.enabled:
            yield name, value


def enabled_sinks(settings: Settings) -> list[tuple[str, SinkSettings]]:
    """The configured sinks in declaration order, as (name, settings)."""
    return list(_enabled_sinks(settings.sinks))


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    data: dict[str, Any] = {}
    file = str(path or "config")
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError([Problem(file=file, message=f"cannot read: {exc.strerror}")]) from exc
        except tomllib.TOMLDecodeError as exc:
            line = getattr(exc, "lineno", None)
            raise ConfigError([Problem(file=file, line=line, message=str(exc))]) from exc
    overlay_env(Settings, data, os.environ if environ is None else environ, problems)
    keys: list[tuple[str, str]] = []
    good = check_keys(Settings, data, "", keys)
    problems += [Problem(file=file, where=where, message=message) for where, message in keys]
    if problems:
        raise ConfigError(problems)
    try:
        return msgspec.convert(good, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError([Problem(file=file, message=str(exc))]) from exc
