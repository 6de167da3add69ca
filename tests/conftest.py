from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from blockbuster import BlockBuster, blockbuster_ctx

from router.app import make_app
from router.config import Settings, load_settings, override
from router.ruletable import RuleTable, default_rules_path, load_rules
from router.ruletable.registry import Registry, load_registry
from router.sinks.memory import MemorySink
from router.stats import Stats

pytest_plugins = ["tests.support.sidecar"]

FLOW_KEY = "test-flow-key"
CLIENT_ID = "5882386c6d801776"
ORIGIN = "https://rp.example"

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="session")
def rules() -> RuleTable:
    return load_rules([default_rules_path()])


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry([default_rules_path()])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    base = load_settings(environ={})
    # Spools and dead letters of durable sinks go to the test's own directory.
    return override(
        base,
        flow={"key": FLOW_KEY, "allowed_origins": [ORIGIN], "clients": {CLIENT_ID: "fx-monitor"}},
        spool={"path": str(tmp_path / "spool")},
    )


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def stats() -> Stats:
    return Stats()


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as bb:
        yield bb


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    rules: RuleTable,
    sink: MemorySink,
    stats: Stats,
    registry: Registry,
    blockbuster: BlockBuster,
) -> AsyncIterator[Client]:
    app = make_app(settings, rules=rules, sinks=[sink], stats=stats, registry=registry)
    yield await aiohttp_client(app)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
