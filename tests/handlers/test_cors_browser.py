"""CORS of /metrics-flow from a relying party's page, in a real headless Chromium.

FxA's get-metrics-flow.js answers preflights with the `cors` middleware
(`methods: 'GET'`, an origin allow-list), which echoes the requested headers; a
`fetch` with a non-simple header is preflighted, so without that echo the browser
blocks the GET and no flow starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from router.app import make_app
from router.config import Settings, override
from router.ruletable import RuleTable
from router.ruletable.registry import Registry
from router.sinks.memory import MemorySink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import Client
from ..support.browser import chromium

AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]
PAGE = b"<!doctype html><title>relying party</title><p>sign up for Firefox</p>"

FETCH = """
fetch(%(url)s, {headers: {"X-Requested-With": "XMLHttpRequest",
                          "Content-Type": "application/json"}})
  .then(async (r) => ({status: r.status, body: await r.json()}))
  .catch((e) => ({blocked: String(e)}))
"""


async def page_server(aiohttp_server: AiohttpServer) -> TestServer:
    async def index(request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    return await aiohttp_server(app)


async def test_preflighted_fetch_from_an_allowed_origin_starts_a_flow(
    aiohttp_server: AiohttpServer,
    settings: Settings,
    rules: RuleTable,
    registry: Registry,
    sink: MemorySink,
    tmp_path: Path,
) -> None:
    allowed = await page_server(aiohttp_server)
    other = await page_server(aiohttp_server)
    allowed_origin = str(allowed.make_url("/")).rstrip("/")
    settings = override(settings, flow={"allowed_origins": [allowed_origin]})
    router = make_app(settings, rules=rules, sinks=[sink], stats=Stats(), registry=registry)
    router_server = await aiohttp_server(router)
    flow_url = str(router_server.make_url("/metrics-flow?entrypoint=rp-page"))

    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.navigate(str(allowed.make_url("/")))
        result = await page.evaluate(FETCH % {"url": repr(flow_url)})
        assert result.get("status") == 200, result
        assert len(result["body"]["flowId"]) == 64

        refused = await browser.new_page()
        await refused.navigate(str(other.make_url("/")))
        blocked = await refused.evaluate(FETCH % {"url": repr(flow_url)})
        assert "blocked" in blocked, blocked

    await router[DISPATCHER].flush()
    # Only the allowed page's flow began (the other was refused at its preflight).
    assert [f.event for f in sink.flow] == ["flow.begin"]
    assert sink.flow[0].entrypoint == "rp-page"


async def test_preflight_answer_is_the_cors_middlewares(client: Client) -> None:
    # cors/lib/index.js configureAllowedHeaders: no `allowedHeaders` option, so the
    # request's Access-Control-Request-Headers is reflected (and Vary names it).
    resp = await client.options(
        "/metrics-flow",
        headers={
            "Origin": "https://rp.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-requested-with,content-type",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://rp.example"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET"
    assert resp.headers["Access-Control-Allow-Headers"] == "x-requested-with,content-type"
    assert "Access-Control-Request-Headers" in resp.headers["Vary"]
    assert resp.headers["Access-Control-Max-Age"] == "600"
    bad = await client.options(
        "/metrics-flow",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Headers": "x-a"},
    )
    assert bad.status == 403
    assert "Access-Control-Allow-Headers" not in bad.headers
