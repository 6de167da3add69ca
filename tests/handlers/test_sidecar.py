"""The sidecar API: server-side events, metrics context stash, registry validation, auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.cli import main
from router.enrich.context import MemoryStore
from router.enrich.flow import now_ms
from router.ruletable import RuleTable
from router.ruletable.registry import check_registry, load_registry
from router.sinks.memory import MemorySink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import Client
from ..support.bodies import body
from ..support.sidecar import AUTH, DEVICE, RULES_DIR, TOKEN, UID, MakeClient, context, event, send

# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Bearer"}],
)
async def test_wrong_or_missing_token_is_401(
    make_client: MakeClient, stats: Stats, headers: dict[str, str]
) -> None:
    client = await make_client()
    for path in ("/sidecar/events", "/sidecar/context", "/sidecar/context/propagate"):
        resp = await client.post(path, json={}, headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"] == "Unauthorized"
    assert stats.total("request.rejected") == 3


async def test_unset_token_refuses_everyone(make_client: MakeClient) -> None:
    client = await make_client(token="")
    resp = await client.post("/sidecar/events", json={}, headers={"Authorization": "Bearer "})
    assert resp.status == 401


# -- events through the rule table --------------------------------------------------------------


async def test_flow_event_with_inline_context(make_client: MakeClient, sink: MemorySink) -> None:
    client = await make_client()
    ctx = context(utmSource="blog", entrypoint="menu")
    before = now_ms()
    await send(client, event("account.created", metrics_context=ctx))
    (amp,) = sink.amplitude
    assert amp.event_type == "fxa_reg - created"
    assert amp.user_id == UID and amp.device_id == DEVICE
    assert amp.session_id == ctx["flowBeginTime"]
    assert amp.user_properties["flow_id"] == ctx["flowId"]
    assert amp.user_properties["utm_source"] == "blog"
    assert amp.event_properties == {"service": "sync"}
    (flow_event,) = sink.flow
    assert flow_event.event == "account.created" and flow_event.flow_id == ctx["flowId"]
    assert flow_event.time >= before
    assert flow_event.flow_time == flow_event.time - ctx["flowBeginTime"]


async def test_reset_second_output_and_flow_complete(
    make_client: MakeClient, sink: MemorySink
) -> None:
    client = await make_client()
    ctx = context()
    await send(client, event("account.reset", metrics_context=ctx, time=now_ms()))
    types = [(e.event_type, e.time) for e in sink.amplitude]
    (first, t0), (second, t1) = types  # the rule's own `complete`: no second one
    assert (first, second) == ("fxa_login - forgot_complete", "fxa_login - complete")
    assert t1 == t0 + 1
    assert [f.event for f in sink.flow] == ["account.reset", "flow.complete"]


async def test_minimal_event_keeps_only_uid_service_version(
    make_client: MakeClient, sink: MemorySink
) -> None:
    client = await make_client()
    await send(client, event("token.created", device_id=DEVICE))
    (amp,) = sink.amplitude
    assert amp.event_type == "fxa_activity - access_token_created"
    assert amp.user_id == UID and amp.device_id is None
    assert amp.event_properties == {"service": "sync"} and amp.user_properties == {}
    assert sink.flow == []


async def test_stashed_context_is_used_and_cleared_on_complete(
    make_client: MakeClient, sink: MemorySink
) -> None:
    client = await make_client()
    ctx = context(flowType="login")
    stash = {"uid": UID, "token_id": "a1b2", "metrics_context": ctx}
    resp = await client.post("/sidecar/context", json=stash, headers=AUTH)
    assert await resp.json() == {"stored": True}
    await send(client, event("account.login", token_id="a1b2"))
    assert [e.event_type for e in sink.amplitude] == ["fxa_login - success", "fxa_login - complete"]
    assert [f.event for f in sink.flow] == ["account.login", "flow.complete"]
    assert all(f.flow_id == ctx["flowId"] for f in sink.flow)
    # Cleared: a new stash for the same token is stored again.
    resp = await client.post("/sidecar/context", json=stash, headers=AUTH)
    assert await resp.json() == {"stored": True}


@pytest.mark.parametrize(
    ("ctx", "reason", "words"),
    [
        # The counter's tag is snake_case (statsd and Prometheus spell it alike); the log
        # line words it as FxA does (packages/fxa-auth-server/lib/metrics/context.js).
        (None, "missing_context", "missing context"),
        ({"deviceId": DEVICE}, "missing_flow_id", "missing flowId"),
        (context(begin_ago_ms=3 * 3600 * 1000), "expired_flow_begin_time", "expired flowBeginTime"),
        ({**context(), "flowId": "0" * 64}, "invalid_signature", "invalid signature"),
    ],
)
async def test_invalid_context_goes_on_as_non_flow_event(
    make_client: MakeClient,
    sink: MemorySink,
    stats: Stats,
    ctx: dict[str, Any] | None,
    reason: str,
    words: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_client()
    fields = {"metrics_context": ctx} if ctx else {}
    with caplog.at_level("INFO", "metrics.context"):
        await send(client, event("account.created", **fields))
    (amp,) = sink.amplitude
    assert amp.event_type == "fxa_reg - created"
    assert "flow_id" not in amp.user_properties and amp.session_id is None
    assert sink.flow == []
    assert stats.get("server_events.context.invalid", reason=reason) == 1
    assert words in caplog.text


# -- registry validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "path", "words"),
    [
        (event("account.exploded"), "$.events[1].event", "account.exploded"),
        (event("device.created", attributes={"colour": "red"}), "attributes.colour", "colour"),
        (event("device.created", attributes={"deviceType": 3}), "attributes.deviceType", "str"),
        (event("subscription.ended", attributes={"productId": "p"}), "attributes.planId", "planId"),
        ({"event": "account.created"}, "$.events[1].uid", "uid"),
    ],
)
async def test_registry_refuses_bad_events(
    make_client: MakeClient, sink: MemorySink, bad: dict[str, Any], path: str, words: str
) -> None:
    client = await make_client()
    data = await send(client, event("token.created"), bad, status=400)
    (key,) = data["validation"]["keys"]
    assert key.startswith("$.events[1]") and key.endswith(path)
    assert words in data["message"] and bad["event"] in data["message"]
    assert sink.records == []  # the good first event is not half-processed


async def test_schema_errors_name_the_field(make_client: MakeClient) -> None:
    client = await make_client()
    bad_ctx = {"flowId": "f" * 64}  # without flowBeginTime
    data = await send(client, event("account.created", metrics_context=bad_ctx), status=400)
    assert data["validation"]["keys"] == ["$.events[0].metrics_context"]


async def test_email_pattern_registration(make_client: MakeClient) -> None:
    client = await make_client()
    attrs = {"emailDomain": "example.com", "templateVersion": 2}
    await send(client, event("email.verifyLogin.sent", attributes=attrs))
    await send(client, event("email.a.b.sent"), status=400)


def test_registry_duplicates_are_check_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.toml").write_text('[events."x.y"]\nactivity = true\n')
    (tmp_path / "b.toml").write_text(
        '# another\n[events."x.y"]\n\n[events."z"]\nattributes = { n = "number" }\n'
    )
    problems = check_registry([tmp_path])
    assert [(Path(p.file).name, p.where, p.line) for p in problems] == [
        ("b.toml", 'events."x.y"', 2),
        ("b.toml", 'events."z"', 4),
    ]
    assert "registered twice" in problems[0].message and "a.toml:1" in problems[0].message
    assert main(["rules", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'b.toml:2: error: events."x.y": registered twice' in err
    assert "2 error(s)" in err


def test_bundled_registry_names_every_reference_event() -> None:
    registry = load_registry([RULES_DIR])
    activity = """account.changedPassword account.confirmed account.created account.deleted
        account.keyfetch account.login account.reset account.signed account.verified
        device.created device.deleted device.updated oauth.token.created
        sync.sentTabToDevice""".split()
    not_flow = """account.changedPassword account.deleted device.created device.deleted
        device.updated sync.sentTabToDevice token.created verify.success""".split()
    complete = ["account.signed", "account.verified", "account.login", "account.reset"]
    for name in activity:
        spec = registry.lookup(name)
        assert spec is not None and spec.activity, name
    for name in not_flow:
        spec = registry.lookup(name)
        assert spec is not None and not spec.flow, name
    for name in complete:
        spec = registry.lookup(name)
        assert spec is not None and spec.flow_complete and spec.flow_type, name
    assert check_registry([RULES_DIR]) == []


async def test_browser_events_stay_lenient(client: Client, stats: Stats) -> None:
    resp = await client.post("/metrics", json=body([("no.such.event", 10)]))
    assert resp.status == 200
    await client.app[DISPATCHER].flush()
    assert stats.get("metrics.events.unmapped") == 1


async def test_memory_store_is_bounded_and_respects_ttl() -> None:
    store = MemoryStore(max_entries=2)
    assert await store.add("a", b"1", 60)
    assert not await store.add("a", b"2", 60)  # add-only
    assert await store.add("b", b"2", 60) and await store.add("c", b"3", 60)
    assert await store.get("a") is None and await store.get("c") == b"3"  # oldest evicted
    assert await store.add("d", b"4", 0)
    assert await store.get("d") is None  # expired


async def test_bundled_auth_rules_end_to_end(
    make_client: MakeClient, sink: MemorySink, rules: RuleTable
) -> None:
    client = await make_client(rules=rules)
    ctx = context(flowType="registration")
    await send(
        client,
        event("account.created", metrics_context=ctx),
        event("account.reset", metrics_context=context()),
        event("token.created"),
    )
    assert [e.event_type for e in sink.amplitude] == [
        "fxa_reg - created",
        "fxa_login - forgot_complete",
        "fxa_login - complete",
        "fxa_activity - access_token_created",
    ]
    assert [f.event for f in sink.flow] == ["account.created", "account.reset", "flow.complete"]
