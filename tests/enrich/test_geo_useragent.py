"""FxA fidelity: location, user-agent fields, app_version, nothing built on the request path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from router import __version__
from router.app import make_app
from router.config import Settings, load_settings, override
from router.enrich.flow import FlowSigner
from router.enrich.geo import GeoDB, Location, _is_ip, default_database, is_ip
from router.enrich.useragent import UserAgentParser, _family, _version
from router.errors import ConfigError
from router.mapping import Pipeline
from router.ruletable import RuleTable
from router.ruletable.registry import Registry
from router.ruletable.ruleset import RuleSet
from router.sinks.memory import MemorySink
from router.state import DISPATCHER, PIPELINE
from router.stats import Stats

from ..conftest import AiohttpClient, Client
from ..support.bodies import body

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SAMSUNG = (
    "Mozilla/5.0 (Linux; Android 13; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
# MaxMind's GeoLite2 City places this address in England, United Kingdom.
UK_ADDRESS = "81.2.69.160"


Start = Callable[..., Awaitable[Client]]


@pytest.fixture
def start(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    rules: RuleTable,
    sink: MemorySink,
    registry: Registry,
) -> Start:
    """Starts the router with `settings` and the test's overrides (sections), into `sink`."""

    async def make(**sections: dict[str, object]) -> Client:
        changed = override(settings, **sections)
        app = make_app(changed, rules=rules, sinks=[sink], stats=Stats(), registry=registry)
        return await aiohttp_client(app)

    return make


async def post_and_settle(client: Client, headers: dict[str, str]) -> None:
    data = body([("screen.signin", 100), ("flow.signin.submit", 4900)])
    resp = await client.post("/metrics", json=data, headers=headers)
    assert resp.status == 200
    await client.app[DISPATCHER].flush()


# -- 1. location ---------------------------------------------------------------------------


def test_geodb_reads_english_names_like_fxa_geodb() -> None:
    # fxa-geodb lib/location.js: country = names.en, countryCode = iso_code,
    # state = subdivisions[0].names.en; a failed lookup gives nothing.
    geo = GeoDB()
    assert geo.database_type == "GeoLite2-City"
    assert geo.locate(UK_ADDRESS) == Location("United Kingdom", "GB", "England")
    assert geo.locate("127.0.0.1") is None
    assert geo.locate("not an address") is None
    assert geo.locate(None) is None


def test_long_forwarded_entries_are_not_addresses_and_not_cached() -> None:
    before = _is_ip.cache_info().currsize
    assert not is_ip("1" * 5000)
    assert _is_ip.cache_info().currsize == before
    assert is_ip("2001:db8::1") and is_ip("81.2.69.160") and not is_ip("81.2.69")
    parser = UserAgentParser(cache_size=8)
    parser.parse(CHROME_MAC + "x" * 5000)
    assert parser._cached.cache_info().currsize == 1


def test_geodb_cache_is_bounded() -> None:
    geo = GeoDB(cache_size=16)
    for i in range(100):
        geo.locate(f"10.0.0.{i}")
    assert len(geo._cache) <= 16
    assert geo.locate(UK_ADDRESS) is not None


def test_geodb_answers_a_known_network_without_decoding_again() -> None:
    geo = GeoDB()
    first = geo.locate(UK_ADDRESS)
    assert len(geo._networks) == 1
    # The same GeoLite2 network (81.2.68.0/23): answered from the network cache.
    assert geo.locate("81.2.68.5") == first
    assert len(geo._networks) == 1
    assert geo.locate("8.8.8.8") == Location("United States", "US", None)
    assert len(geo._networks) == 2


def test_geo_database_setting_names_an_operators_file(tmp_path: Path) -> None:
    settings = load_settings(environ={"METRICS_ROUTER_GEO_DATABASE": default_database()})
    assert GeoDB(settings.geo.database).locate(UK_ADDRESS) is not None
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a maxmind database")
    with pytest.raises(ConfigError, match="geo.database"):
        GeoDB(str(broken))


async def test_location_from_forwarded_address(
    start: Start, settings: Settings, sink: MemorySink
) -> None:
    # flow-event.js: flow events get country and region (location.state); amplitude.ts
    # mapLocation: Amplitude events get country and region. The address is never logged.
    client = await start(server={"trusted_proxies": 1})
    await post_and_settle(client, {"X-Forwarded-For": UK_ADDRESS})
    assert sink.amplitude and sink.flow
    for event in sink.amplitude:
        assert (event.country, event.region) == ("United Kingdom", "England")
    for flow in sink.flow:
        assert (flow.country, flow.countryCode, flow.region) == ("United Kingdom", "GB", "England")
    assert UK_ADDRESS.encode() not in msgspec.json.encode(sink.records)


async def test_failed_lookup_sets_nothing(
    start: Start, settings: Settings, sink: MemorySink
) -> None:
    # The loopback peer is in no database: no country, no region (fxa-geodb throws,
    # geo-locate.js answers {}).
    client = await start()
    await post_and_settle(client, {"X-Forwarded-For": UK_ADDRESS})  # trusted_proxies = 0
    assert sink.amplitude and sink.flow
    assert all(e.country is None and e.region is None for e in sink.amplitude)
    assert all(f.country is None and f.countryCode is None for f in sink.flow)


async def test_geo_can_be_disabled(start: Start, settings: Settings, sink: MemorySink) -> None:
    client = await start(server={"trusted_proxies": 1}, geo={"enabled": False})
    assert client.app[PIPELINE].geo is None
    await post_and_settle(client, {"X-Forwarded-For": UK_ADDRESS})
    assert all(e.country is None for e in sink.amplitude)


# -- 2, 3. user agent ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "browser", "version", "os", "os_version", "model"),
    [
        # toVersionString(): Chrome 120.0.0.0 gives 120.0.0; Mac OS X 10_15_7 gives 10.15.7.
        (CHROME_MAC, "Chrome", "120.0.0", "Mac OS X", "10.15.7", "Mac"),
        (SAMSUNG, "Chrome Mobile", "120.0.6099", "Android", "13", "Samsung SM-G991B"),
        (IPHONE, "Mobile Safari", "17.1", "iOS", "17.1", "iPhone"),
        (IPAD, "Mobile Safari", "16.6", "iOS", "16.6", "iPad"),
        # No device brand found: no device_model (mapFormFactor).
        (FIREFOX_LINUX, "Firefox", "121.0", "Linux", None, None),
        ("curl/7.88.1", "curl", "7.88.1", None, None, None),
    ],
)
def test_user_agent_fields_are_fxas(
    agent: str,
    browser: str,
    version: str,
    os: str | None,
    os_version: str | None,
    model: str | None,
) -> None:
    # fxa-shared/metrics/amplitude.ts mapBrowser/mapOs/mapFormFactor over
    # fxa-shared/lib/user-agent.ts parse().
    ua = UserAgentParser().parse(agent)
    assert (ua.browser, ua.browser_version) == (browser, version)
    assert (ua.os, ua.os_version) == (os, os_version)
    assert ua.device_model == model


def test_unsafe_families_and_versions_are_dropped() -> None:
    # fxa-shared/lib/user-agent.ts: VALID_FAMILY_OR_NAME = /^[\w ]{1,32}$/,
    # VALID_VERSION = /^[\w.]{1,16}$/; family `Other` is omitted (getFamily).
    assert _family(SimpleNamespace(family="Mail.ru")) is None
    assert _family(SimpleNamespace(family="Other")) is None
    assert _family(SimpleNamespace(family="x" * 33)) is None
    assert _family(SimpleNamespace(family="Firefox Mobile")) == "Firefox Mobile"
    assert _family(SimpleNamespace(family="Fïrefox")) is None  # JavaScript's \w is ASCII
    assert _version("1234567890", "123456") is None  # 17 characters
    assert _version("12", "0", "a-b") is None
    assert _version("12", None, "3") == "12"  # toVersionString stops at the first gap
    assert UserAgentParser().parse("").browser is None


async def test_amplitude_records_carry_fxas_user_agent_fields(
    client: Client, sink: MemorySink
) -> None:
    await post_and_settle(client, {"User-Agent": SAMSUNG})
    event = sink.amplitude[0]
    assert event.device_model == "Samsung SM-G991B"
    assert (event.os_name, event.os_version) == ("Android", "13")
    assert event.user_properties["ua_browser"] == "Chrome Mobile"
    assert event.user_properties["ua_version"] == "120.0.6099"


# -- 4. app_version --------------------------------------------------------------------------


def test_app_version_is_the_last_major_minor(rules: RuleTable) -> None:
    # amplitude.ts: version = /([0-9]+)\.([0-9]+)$/.exec(data.version)[0]
    signer = FlowSigner("k")
    ruleset = RuleSet(rules)
    assert Pipeline(ruleset, signer, Stats(), app_version="1.271.3").app_version == "271.3"
    assert Pipeline(ruleset, signer, Stats(), app_version="v2").app_version is None


async def test_app_version_setting_and_default(
    start: Start, settings: Settings, sink: MemorySink
) -> None:
    major_minor = ".".join(__version__.split(".")[-2:])
    client = await start()
    assert client.app[PIPELINE].app_version == major_minor
    client = await start(amplitude={"app_version": "1.271.3"})
    await post_and_settle(client, {})
    assert {e.app_version for e in sink.amplitude} == {"271.3"}
    loaded = load_settings(environ={"METRICS_ROUTER_AMPLITUDE_APP_VERSION": "1.5.0"})
    assert loaded.amplitude.app_version == "1.5.0"


# -- 12. nothing built lazily on the request path ----------------------------------------------

_STARTUP_PROBE = """
import json, ua_parser
from router.app import make_app
from router.config import load_settings
settings = load_settings(environ={"METRICS_ROUTER_FLOW_KEY": "k"})
built_before = "parser" in vars(ua_parser)
app = make_app(settings)
from router.state import PIPELINE
pipeline = app[PIPELINE]
print(json.dumps({
    "before": built_before,
    "after": "parser" in vars(ua_parser),
    "geo_open": pipeline.geo is not None and pipeline.geo.database_type,
}))
"""


def test_startup_builds_the_parser_and_opens_the_geo_database(tmp_path: Path) -> None:
    # A fresh process: ua-parser builds its parser on first use unless we force it at
    # start-up, which is what made the first request after start slow.
    out = subprocess.run(
        [sys.executable, "-c", _STARTUP_PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["before"] is False
    assert probe["after"] is True
    assert probe["geo_open"] == "GeoLite2-City"
