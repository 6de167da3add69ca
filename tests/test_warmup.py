"""Start-up runs the request path once (router/warmup.py): the first request builds nothing."""

from __future__ import annotations

from router.app import make_app
from router.config import Settings
from router.ruletable import RuleTable
from router.sinks.memory import MemorySink
from router.state import PIPELINE
from router.stats import Stats
from router.warmup import _NAMES

from .conftest import AiohttpClient
from .support.bodies import body


async def test_first_request_finds_the_rule_cache_warm_and_warm_up_counts_nothing(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable, sink: MemorySink
) -> None:
    rules.cache_clear()  # the session's table: start from what a fresh process has
    stats = Stats()
    client = await aiohttp_client(make_app(settings, rules=rules, sinks=[sink], stats=stats))
    table = client.app[PIPELINE].rules
    warmed = table.cache_len
    assert warmed > 0  # the journey's fuzzy names were looked up at start
    assert stats.total("metrics.events.accepted") == 0 and not sink.records
    resp = await client.post("/metrics", json=body([(n, i) for i, n in enumerate(_NAMES)]))
    assert resp.status == 200
    assert (await client.get("/metrics-flow?entrypoint=firstrun&form_type=email")).status == 200
    assert table.cache_len == warmed  # nothing looked up for the first time
    assert stats.total("metrics.events.accepted") == len(_NAMES)
