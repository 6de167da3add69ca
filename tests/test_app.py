"""The app's long-lived objects: one owner each, frozen settings, rule sets swapped whole."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from router.app import make_app, reload_rules
from router.config import (
    AmplitudeSinkSettings,
    MemorySinkSettings,
    Settings,
    SinkSettings,
    override,
)
from router.dispatch.deadletter import DeadLetters
from router.errors import BadRequest, Forbidden, HttpError, Unauthorized, Unavailable
from router.ruletable import RuleTable, default_rules_path
from router.ruletable.ruleset import RuleSet
from router.sinks import FACTORIES, Sink
from router.sinks.memory import MemorySink
from router.state import DEADLETTERS, DISPATCHER, PIPELINE

from .conftest import AiohttpClient
from .support.bodies import body


class TracedSink(MemorySink):
    """A memory sink that records its start and close, and can refuse to start."""

    def __init__(self, name: str, fail: bool = False) -> None:
        super().__init__(name)
        self.fail = fail
        self.started = self.closed = False

    async def start(self) -> None:
        if self.fail:
            raise OSError("destination unreachable")
        self.started = True

    async def aclose(self) -> None:
        self.closed = True


async def test_a_sink_that_fails_to_start_stops_the_ones_started_before(
    settings: Settings, rules: RuleTable
) -> None:
    first, second, broken = TracedSink("first"), TracedSink("second"), TracedSink("x", True)
    app = make_app(settings, rules=rules, sinks=[first, second, broken])
    server = TestServer(app)
    with pytest.raises(OSError, match="unreachable"):
        await server.start_server()
    try:
        assert first.started and second.started
        assert first.closed and second.closed
        runners = app[DISPATCHER].runners
        assert all(task.done() for runner in runners[:2] for task in runner._workers)
    finally:
        await server.close()


async def test_sinks_do_not_close_the_shared_dead_letter_store(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable
) -> None:
    # Amplitude and VWO sinks share the app's store; only the app closes it, after them.
    amplitude = AmplitudeSinkSettings(api_key="k", hmac_key="h", url="http://127.0.0.1:9/b")
    conf = override(settings, sinks={"log": None, "amplitude": amplitude})
    app = make_app(conf, rules=rules)
    client = await aiohttp_client(app)
    store = app[DEADLETTERS]
    await store.open()
    (runner,) = app[DISPATCHER].runners
    await runner.sink.aclose()
    assert store._db is not None  # still open after its sink closed
    await client.close()
    assert store._db is None  # closed by its owner, the app


async def test_the_app_takes_sink_factories_and_leaves_the_global_ones_alone(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable
) -> None:
    made: list[TracedSink] = []

    def factory(name: str, conf: SinkSettings, s: Settings, dead: DeadLetters) -> Sink:
        made.append(TracedSink(name))
        return made[-1]

    before = dict(FACTORIES)
    conf = override(settings, sinks={"log": None, "memory": MemorySinkSettings()})
    app = make_app(conf, rules=rules, sink_factories={**FACTORIES, "memory": factory})
    client = await aiohttp_client(app)
    assert [s.name for s in made] == ["memory"] and made[0].started
    resp = await client.post("/metrics", json=body([("flow.signin.engage", 1)]))
    assert resp.status == 200
    await app[DISPATCHER].flush()
    assert made[0].flow and FACTORIES == before


def test_settings_are_frozen_and_overridden_by_copy(settings: Settings) -> None:
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]
    moved = override(settings, server={"port": 1}, spool={"path": "elsewhere"})
    assert (moved.server.port, moved.spool.path) == (1, "elsewhere")
    assert settings.server.port == 8080 and settings.spool.path != "elsewhere"
    assert moved.flow is settings.flow  # untouched sections are shared, not copied


def test_http_errors_carry_their_status_and_a_401_is_no_400() -> None:
    statuses = {
        BadRequest("x"): 400,
        Unauthorized("x"): 401,
        Forbidden("x"): 403,
        Unavailable("x", "spool_full", 5): 503,
    }
    for error, status in statuses.items():
        assert isinstance(error, HttpError) and error.status == status
        assert error.body()["statusCode"] == status
    assert not isinstance(Unauthorized("x"), BadRequest | Forbidden)
    assert not isinstance(Forbidden("x"), BadRequest)
    assert "validation" in BadRequest("x", "$.a").body()
    # Every 4xx names its field (the OpenAPI contract); a 503 is about no field.
    assert Unauthorized("x", "$.headers.authorization").body()["validation"] == {
        "keys": ["$.headers.authorization"]
    }
    assert "validation" not in Unavailable("x", "spool_full", 5).body()


def copy_rules(tmp_path: Path) -> Path:
    rules_dir = tmp_path / "rules"
    shutil.copytree(default_rules_path(), rules_dir)
    return rules_dir


async def test_reload_swaps_rules_and_registry_together_or_not_at_all(
    aiohttp_client: AiohttpClient, settings: Settings, tmp_path: Path
) -> None:
    rules_dir = copy_rules(tmp_path)
    conf = override(settings, rules={"paths": [str(rules_dir)]})
    app = make_app(conf, sinks=[MemorySink()])
    await aiohttp_client(app)
    pipeline = app[PIPELINE]
    first: RuleSet = pipeline.ruleset
    assert first.registry.lookup("account.created") is not None

    extra = rules_dir / "zz-extra.toml"
    extra.write_text(
        '[exact."custom.thing"]\ngroup = "activity"\nevent = "custom_thing"\n'
        '[events."custom.server"]\nattributes = {}\n'
    )
    assert await reload_rules(app)
    second = pipeline.ruleset
    assert second is not first
    assert second.rules.match("custom.thing") is not None
    assert second.registry.lookup("custom.server") is not None

    # A broken registry table refuses the whole reload: the rules of that set are not used.
    extra.write_text(
        '[exact."custom.other"]\ngroup = "activity"\nevent = "custom_other"\n'
        '[events."custom.server"]\nattributes = { n = "nonsense" }\n'
    )
    assert not await reload_rules(app)
    assert pipeline.ruleset is second
    assert pipeline.rules.match("custom.other") is None


async def test_rules_cache_size_sizes_the_match_cache(
    aiohttp_client: AiohttpClient, settings: Settings, tmp_path: Path
) -> None:
    conf = override(settings, rules={"cache_size": 16, "paths": [str(copy_rules(tmp_path))]})
    app = make_app(conf, sinks=[MemorySink()])
    client = await aiohttp_client(app)
    rules = app[PIPELINE].rules
    assert rules.cache_size == 16
    names: Sequence[tuple[str, int]] = [(f"flow.signin.x{i}", 1) for i in range(40)]
    resp = await client.post("/metrics", json=body(list(names)))
    assert resp.status == 200
    await app[DISPATCHER].flush()
    assert 0 < rules.cache_len <= 16
    assert await reload_rules(app)  # a reloaded set keeps the configured size
    assert app[PIPELINE].rules.cache_size == 16
