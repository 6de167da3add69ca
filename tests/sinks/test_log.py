"""FxA fidelity: the lines its consumers read (flowEvent, amplitudeEvent, activityEvent, ...)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import msgspec
import pytest

from router.app import make_app
from router.config import (
    ClientMetricsSinkSettings,
    LogSinkSettings,
    Settings,
    load_settings,
    override,
)
from router.dispatch.deadletter import DeadLetters
from router.errors import ConfigError
from router.records import ActivityEvent, AmplitudeEvent, FlowEvent, VwoConversion
from router.ruletable import RuleTable
from router.ruletable.registry import Registry
from router.sinks import build_sinks
from router.sinks.log import LogSink
from router.sinks.memory import MemorySink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import AiohttpClient, Client
from ..support.bodies import body
from ..support.sidecar import MakeClient, event, send

FLOW = FlowEvent(
    event="flow.signin.submit",
    flow_id="f" * 64,
    flow_time=1200,
    time=1_700_000_001_200,
    entrypoint="firstrun",
    service="sync",
    locale="en_US",
    userAgent="UA",
    country="United Kingdom",
    countryCode="GB",
    region="England",
    utm_source="blog",
)
AMPLITUDE = AmplitudeEvent(
    event_type="fxa_login - submit",
    time=1_700_000_001_200,
    device_id="d" * 32,
    country="United Kingdom",
    event_properties={"service": "sync"},
    user_properties={"flow_id": "f" * 64},
)
ACTIVITY = ActivityEvent(event="account.login", uid="a" * 32, service="sync", userAgent="UA")


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


# -- 8. line formats -------------------------------------------------------------------------


def test_fxa_format_flow_event_is_a_bare_json_line() -> None:
    # content server flow-event.js logFlowEvent: process.stderr.write(JSON.stringify(
    # {country, event, flow_id, flow_time, hostname, locale, op: 'flowEvent', pid, region,
    # userAgent, v: VERSION, ...context/entrypoint/service/utm_*})).
    (line,) = lines(LogSink("log", format="fxa").encode([FLOW]))
    assert line == {
        "country": "United Kingdom",
        "countryCode": "GB",
        "event": "flow.signin.submit",
        "flow_id": "f" * 64,
        "flow_time": 1200,
        "hostname": socket.gethostname(),
        "locale": "en_US",
        "op": "flowEvent",
        "pid": os.getpid(),
        "region": "England",
        "userAgent": "UA",
        "v": 1,
        "time": 1_700_000_001_200,
        "entrypoint": "firstrun",
        "service": "sync",
        "utm_source": "blog",
    }


def test_fxa_format_amplitude_event_is_mozlog_with_op() -> None:
    # fxa-shared/metrics/amplitude.ts: the transform returns {op: 'amplitudeEvent', ...};
    # amplitude.js logs it with logger.info('amplitudeEvent', ...) through mozlog, whose
    # heka formatter serialises nested objects as JSON strings.
    (line,) = lines(LogSink("log", logger="fxa-content-server", format="fxa").encode([AMPLITUDE]))
    assert line["Type"] == "amplitudeEvent"
    assert line["Logger"] == "fxa-content-server"
    assert line["EnvVersion"] == "2.0" and line["Severity"] == 6
    fields = line["Fields"]
    assert next(iter(fields)) == "op" and fields["op"] == "amplitudeEvent"
    assert fields["event_type"] == "fxa_login - submit"
    assert json.loads(fields["event_properties"]) == {"service": "sync"}
    assert json.loads(fields["user_properties"]) == {"flow_id": "f" * 64}


def test_default_format_is_unchanged_mozlog() -> None:
    flow_line, amplitude_line = lines(LogSink("log").encode([FLOW, AMPLITUDE]))
    assert flow_line["Type"] == "flowEvent" and flow_line["Fields"]["event"] == FLOW.event
    assert "op" not in flow_line and "op" not in amplitude_line["Fields"]


def expected_mozlog(record: Any) -> tuple[str, dict[str, Any]]:
    """A record's mozlog (Type, Fields), written out from the record by hand."""
    kinds: dict[type, str] = {
        FlowEvent: "flowEvent",
        AmplitudeEvent: "amplitudeEvent",
        ActivityEvent: "activityEvent",
        VwoConversion: "vwoConversion",
    }
    fields = {k: v for k, v in msgspec.structs.asdict(record).items() if v not in (None, {})}
    fields.pop("insert_id", None)  # the Amplitude sink's, not a log field
    for nested in ("event_properties", "user_properties", "properties"):
        if nested in fields:
            fields[nested] = json.dumps(fields[nested], separators=(",", ":"))
    return kinds[type(record)], fields


def test_mixed_batches_write_one_line_per_record_grouped_by_kind() -> None:
    # The sink gathers the runs of each record type and encodes each kind at once:
    # interleaved kinds, dicts that change inside a run, empty properties and a stray
    # insert_id must each still give the record's own line; the lines come grouped by
    # kind (in the order the kinds first appear), each kind in the order given.
    other_user = {"flow_id": "e" * 64, "$append": {"experiments": ["x"]}}
    records: list[Any] = [
        AMPLITUDE,
        msgspec.structs.replace(AMPLITUDE, event_type="a2", event_properties={}),
        msgspec.structs.replace(AMPLITUDE, user_properties=other_user, insert_id="i" * 64),
        FLOW,
        msgspec.structs.replace(FLOW, event="flow.signin.view", utm_source=None),
        VwoConversion(name="signup", user_id="u" * 32, time=1, properties={"plan": "p"}),
        ACTIVITY,
        ACTIVITY,
        AMPLITUDE,
        FLOW,
        msgspec.structs.replace(AMPLITUDE, user_properties={}),
    ]
    written = lines(LogSink("log").encode(records))
    assert len(written) == len(records)
    envelopes = {
        (line["Logger"], line["Hostname"], line["Pid"], line["Timestamp"]) for line in written
    }
    assert len(envelopes) == 1  # one envelope for the whole batch
    first_seen = {kind: i for i, kind in reversed(list(enumerate(map(type, records))))}
    grouped = sorted(records, key=lambda r: first_seen[type(r)])  # stable: order kept
    assert [line["Type"] for line in written] == (
        ["amplitudeEvent"] * 5 + ["flowEvent"] * 3 + ["vwoConversion"] + ["activityEvent"] * 2
    )
    for line, record in zip(written, grouped, strict=True):
        assert (line["Type"], line["Fields"]) == expected_mozlog(record)
    assert LogSink("log").encode([]) == b""


async def test_a_batch_is_written_to_the_file_as_encoded(tmp_path: Path) -> None:
    # send() writes the pieces of a batch with one writev(2): the file must hold exactly
    # the lines encode() gives, every kind's, in order. Records whose dicts alternate
    # (e1, e2, e1 / u1, u2, u1) must each keep their own nested strings.
    e2, u2 = {"service": "pocket"}, {"flow_id": "e" * 64}
    records: list[Any] = [
        AMPLITUDE,
        msgspec.structs.replace(AMPLITUDE, event_properties=e2, user_properties=u2),
        msgspec.structs.replace(AMPLITUDE, event_type="third"),
        FLOW,
        msgspec.structs.replace(AMPLITUDE, event_properties=e2),
        VwoConversion(name="signup", user_id="u" * 32, time=1, properties={"plan": "p"}),
        ACTIVITY,
    ]
    path = tmp_path / "events.log"
    async with LogSink("log", str(path)) as sink:
        await sink.send(records)
        await sink.send(records[:1])
    expected = lines(LogSink("log").encode(records) + LogSink("log").encode(records[:1]))
    written = lines(path.read_bytes())
    for line in [*written, *expected]:
        del line["Timestamp"]
    assert written == expected
    nested = [json.loads(line["Fields"]["event_properties"]) for line in written[:4]]
    assert nested == [{"service": "sync"}, e2, {"service": "sync"}, e2]
    users = [json.loads(line["Fields"]["user_properties"]) for line in written[:4]]
    u1 = AMPLITUDE.user_properties
    assert users == [u1, u2, u1, u1]


def test_log_format_setting() -> None:
    settings = load_settings(environ={"METRICS_ROUTER_SINKS_LOG_FORMAT": "fxa"})
    assert settings.sinks.log is not None and settings.sinks.log.format == "fxa"
    with pytest.raises(ConfigError, match="format"):
        load_settings(environ={"METRICS_ROUTER_SINKS_LOG_FORMAT": "heka"})


# -- 9. activity events ----------------------------------------------------------------------


async def test_sidecar_activity_events_write_activity_lines(
    make_client: MakeClient, sink: MemorySink
) -> None:
    # auth server lib/metrics/events.js: every ACTIVITY_EVENTS member is logged with
    # log.activityEvent({event, uid, device_id, service, userAgent, ...}).
    client = await make_client()
    device = "0123456789abcdef0123456789abcdef"
    await send(
        client,
        event("account.login", device_id=device, user_agent="Firefox/121.0"),
        event("token.created"),  # not an activity event
    )
    (activity,) = sink.activity
    assert activity == ActivityEvent(
        event="account.login",
        uid=activity.uid,
        device_id=device,
        service="sync",
        userAgent="Firefox/121.0",
    )
    (line,) = lines(LogSink("log").encode([activity]))
    assert line["Type"] == "activityEvent"
    assert line["Fields"]["uid"] == activity.uid and line["Fields"]["device_id"] == device
    (fxa_line,) = lines(LogSink("log", format="fxa").encode([activity]))
    assert fxa_line["Type"] == "activityEvent" and fxa_line["Fields"]["event"] == "account.login"


# -- 10. sampled users ---------------------------------------------------------------------------


def test_client_metrics_sink_is_off_by_default(settings: Settings, tmp_path: Path) -> None:
    assert settings.sinks.client_metrics is None
    built = build_sinks(settings, DeadLetters(tmp_path / "dl.db", Stats()))
    assert [sink.name for sink, _ in built] == ["log"]
    assert "client_metrics" not in LogSink.kinds


async def test_sampled_users_reach_the_client_metrics_stream(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    rules: RuleTable,
    registry: Registry,
    tmp_path: Path,
) -> None:
    # post-metrics.js: `if (metrics.isSampledUser) metricsCollector.write(metrics)`;
    # metrics-collector-stderr.js toLoggableEvent writes op 'client.metrics', v 1, the
    # whitelisted fields ('unknown' when absent), the event types and their offsets.
    log_path, sampled_path = tmp_path / "log.jsonl", tmp_path / "client-metrics.jsonl"
    settings = override(
        settings,
        sinks={
            "log": LogSinkSettings(path=str(log_path), format="fxa"),
            "client_metrics": ClientMetricsSinkSettings(path=str(sampled_path)),
        },
    )
    client: Client = await aiohttp_client(make_app(settings, rules=rules, registry=registry))
    data = body(
        [("screen.signin", 100), ("flow.signin.submit", 4900)],
        isSampledUser=True,
        screen={"width": 1920, "height": 1080, "clientWidth": 1900},
    )
    headers = {"User-Agent": "Mozilla/5.0 Firefox/121.0"}
    assert (await client.post("/metrics", json=data, headers=headers)).status == 200
    unsampled = body([("flow.signin.engage", 200)])
    assert (await client.post("/metrics", json=unsampled, headers=headers)).status == 200
    await client.app[DISPATCHER].flush()
    await client.close()

    (sampled,) = lines(sampled_path.read_bytes())
    assert sampled["op"] == "client.metrics" and sampled["v"] == 1
    assert sampled["hostname"] == socket.gethostname() and sampled["pid"] == os.getpid()
    assert sampled["time"].endswith("T00:00:00.000Z")  # the day only
    assert sampled["lang"] == "en-US" and sampled["context"] == "web"
    assert sampled["service"] == "sync" and sampled["duration"] == data["duration"]
    assert sampled["agent"] == headers["User-Agent"]
    assert sampled["marketingLink"] == "unknown"
    assert sampled["events"] == ["screen.signin", "flow.signin.submit"]
    assert sampled["event_durations"] == [100, 4900]
    assert (sampled["screen.width"], sampled["screen.height"]) == (1920, 1080)

    written = lines(log_path.read_bytes())
    flow_lines = [line for line in written if line.get("op") == "flowEvent"]
    assert [line["event"] for line in flow_lines] == [
        "flow.signin.view",
        "flow.signin.submit",
        "flow.signin.engage",
    ]
    amplitude = [line for line in written if line.get("Type") == "amplitudeEvent"]
    assert amplitude and all(line["Fields"]["op"] == "amplitudeEvent" for line in amplitude)
    assert not any(line.get("op") == "client.metrics" for line in written)
