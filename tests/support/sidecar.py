"""Shared pieces of the sidecar tests: a fixed auth-server rule table and a client factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from blockbuster import BlockBuster

from router.config import Settings, SidecarSettings
from router.ruletable import Mapping, Output, RuleTable, default_rules_path
from router.ruletable.registry import Registry
from router.sinks.memory import MemorySink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import AiohttpClient, Client
from .bodies import flow

TOKEN = "s3cret-sidecar-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UID = "0123456789abcdef0123456789abcdef"
DEVICE = "fedcba9876543210fedcba9876543210"
RULES_DIR = default_rules_path()


def mapping(event_type: str, *, also: tuple[Output, ...] = (), minimal: bool = False) -> Mapping:
    group, _, event = event_type.partition(" - ")
    return Mapping(
        event_type=event_type,
        group=group,
        event=event,
        category=None,
        target=None,
        properties={},
        fields=(),
        also=also,
        minimal=minimal,
        vwo=None,
        vwo_fields=(),
        rule="test",
    )


class AuthRules(RuleTable):
    """The auth-server entries of the bundled rules, fixed (the rule compiler is tested apart)."""

    def __init__(self) -> None:  # a fixed table: nothing to compile
        self.table = {
            "account.created": mapping("fxa_reg - created"),
            "account.login": mapping("fxa_login - success"),
            "account.reset": mapping(
                "fxa_login - forgot_complete", also=(Output("fxa_login - complete", 1),)
            ),
            "token.created": mapping("fxa_activity - access_token_created", minimal=True),
            "device.created": mapping("fxa_activity - device_created"),
            "flow.complete.login": mapping("fxa_login - complete"),
            "flow.complete.registration": mapping("fxa_reg - complete"),
        }

    def match(self, name: str) -> Mapping | None:
        return self.table.get(name)


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    sink: MemorySink,
    stats: Stats,
    registry: Registry,
    blockbuster: BlockBuster,
) -> MakeClient:
    async def make(token: str = TOKEN, rules: RuleTable | None = None, **context: Any) -> Client:
        from router.app import make_app
        from router.config import ContextSettings

        conf = msgspec.structs.replace(
            settings, sidecar=SidecarSettings(token=token), context=ContextSettings(**context)
        )
        table = rules if rules is not None else AuthRules()
        app = make_app(conf, rules=table, sinks=[sink], stats=stats, registry=registry)
        return await aiohttp_client(app)

    return make


def context(begin_ago_ms: int = 10_000, **extra: Any) -> dict[str, Any]:
    flow_id, begin = flow(begin_ago_ms)
    return {"flowId": flow_id, "flowBeginTime": begin, "deviceId": DEVICE, **extra}


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"event": name, "uid": UID, "service": "sync", **fields}


async def send(client: Client, *events: dict[str, Any], status: int = 200) -> dict[str, Any]:
    resp = await client.post("/sidecar/events", json={"events": list(events)}, headers=AUTH)
    data: dict[str, Any] = await resp.json()
    assert resp.status == status, data
    await client.app[DISPATCHER].flush()
    return data
