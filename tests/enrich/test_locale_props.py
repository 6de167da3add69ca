"""FxA fidelity: flow-event locale, the user properties FxA sends, the utm_campaign it allows."""

from __future__ import annotations

import pytest

from router.app import make_app
from router.config import Settings, load_settings, override
from router.enrich.flow import now_ms
from router.enrich.locale import LocaleMatcher, parse_accept_language
from router.errors import ConfigError
from router.ruletable import RuleTable
from router.ruletable.registry import Registry
from router.sinks.memory import MemorySink
from router.state import DISPATCHER
from router.stats import Stats

from ..conftest import AiohttpClient, Client
from ..support.bodies import body
from ..support.sidecar import MakeClient, event, send

# -- 5. locale -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        # i18n-abide lib/i18n.js: bestLanguage + localeFrom, FxA's supported languages.
        ("en-US", "en_US"),
        ("de-DE,de;q=0.9", "de"),  # de-DE is not supported, its primary subtag is
        ("", "en"),  # no header: FxA's default language
        ("xx-YY", "en"),
        ("fr;q=0.5, pt-BR", "pt_BR"),  # sorted by quality
        ("sr-Latn-RS", "sr"),  # primary subtag match
        ("sv-se", "sv_SE"),
        ("*", "en"),
        ("es-ES;q=abc", "es_ES"),  # an unparseable quality counts as 1
    ],
)
def test_locale_is_i18n_abides_best_match(header: str, locale: str) -> None:
    assert LocaleMatcher().locale(header) == locale


def test_accept_language_sort_is_stable_and_bounded() -> None:
    assert parse_accept_language("a;q=0.5,b,c;q=0.5,d") == ["b", "d", "a", "c"]
    assert len(parse_accept_language("en," * 10_000)) < 200
    matcher = LocaleMatcher(cache_size=16)
    for i in range(100):
        matcher.locale(f"x{i}")
    assert len(matcher._cache) <= 16
    # Hostile headers: only the parsed part is kept as a key.
    assert matcher.locale("de," * 3000) == "de"
    assert max(len(key) for key in matcher._cache) <= 256


def test_supported_locales_settings() -> None:
    settings = load_settings(
        environ={
            "METRICS_ROUTER_FLOW_SUPPORTED_LOCALES": "de,fr",
            "METRICS_ROUTER_FLOW_DEFAULT_LOCALE": "fr",
        }
    )
    matcher = LocaleMatcher(settings.flow.supported_locales, settings.flow.default_locale)
    assert matcher.locale("en-US") == "fr"
    assert matcher.locale("de-AT") == "de"
    # FxA's configuration refuses a default language missing from the supported ones.
    with pytest.raises(ConfigError, match="default_locale"):
        load_settings(environ={"METRICS_ROUTER_FLOW_DEFAULT_LOCALE": "tlh"})


async def test_flow_events_carry_the_matched_locale(client: Client, sink: MemorySink) -> None:
    data = body([("flow.signin.submit", 4900)])
    resp = await client.post("/metrics", json=data, headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert resp.status == 200
    resp = await client.get("/metrics-flow")  # no Accept-Language
    assert resp.status == 200
    await client.app[DISPATCHER].flush()
    assert [(f.event, f.locale) for f in sink.flow] == [
        ("flow.signin.submit", "de"),
        ("flow.begin", "en"),
    ]
    # Amplitude's `language` stays the body's `lang` (amplitude.ts: language: data.lang).
    assert sink.amplitude[0].language == "en-US"


# -- 6. user properties --------------------------------------------------------------------------


async def test_newsletters_and_user_preferences(client: Client, sink: MemorySink) -> None:
    # fxa-shared/metrics/amplitude.ts mapNewsletters, mapUserPreferences.
    data = body(
        [("screen.signin", 100)],
        newsletters=["firefox-accounts-journey", "knowledgeIsPower"],
        userPreferences={"two-step-authentication": True, "emails": False},
    )
    resp = await client.post("/metrics", json=data)
    assert resp.status == 200
    await client.app[DISPATCHER].flush()
    props = sink.amplitude[0].user_properties
    assert props["newsletters"] == ["firefox_accounts_journey", "knowledge_is_power"]
    assert props["newsletter_state"] == "subscribed"
    assert props["$append"] == {
        "fxa_services_used": "sync",
        "two_step_authentication": True,
        "emails": False,
    }


async def test_unknown_user_preference_is_a_400(client: Client) -> None:
    # validation.js USER_PREFERENCES: joi.object().keys({...}) allows those keys only.
    data = body([("screen.signin", 100)], userPreferences={"colour": True})
    resp = await client.post("/metrics", json=data)
    assert resp.status == 400
    assert "userPreferences" in (await resp.json())["validation"]["keys"][0]


async def test_server_events_carry_sync_device_counts(
    make_client: MakeClient, sink: MemorySink
) -> None:
    # amplitude.ts mapSyncDevices: device count, devices used within a day/week/four weeks.
    now = now_ms()
    day = 86_400_000
    devices = [
        {"lastAccessTime": now - 1000},
        {"lastAccessTime": now - 3 * day},
        {"lastAccessTime": now - 20 * day},
        {"lastAccessTime": now - 60 * day, "name": "old laptop"},
        {},
    ]
    client = await make_client()
    await send(client, event("account.login", devices=devices))
    props = sink.amplitude[0].user_properties
    assert props["sync_device_count"] == 5
    assert props["sync_active_devices_day"] == 1
    assert props["sync_active_devices_week"] == 2
    assert props["sync_active_devices_month"] == 3


# -- 7. utm_campaign ----------------------------------------------------------------------------

FIRSTRUN_CAMPAIGN = "page+referral+-+not+part+of+a+campaign"


async def test_firstrun_campaign_is_accepted(client: Client, sink: MemorySink) -> None:
    # validation.js: TYPES.UTM_CAMPAIGN = TYPES.UTM.allow('page+referral+-+not+part+of+a+campaign')
    data = body([("flow.signin.submit", 4900)], utm_campaign=FIRSTRUN_CAMPAIGN)
    resp = await client.post("/metrics", json=data)
    assert resp.status == 200
    flow_resp = await client.get("/metrics-flow", params={"utm_campaign": FIRSTRUN_CAMPAIGN})
    assert flow_resp.status == 200
    await client.app[DISPATCHER].flush()
    assert sink.amplitude[0].user_properties["utm_campaign"] == FIRSTRUN_CAMPAIGN
    # flow-event.js drops utm_ values outside /^[\w.%-]+$/ from flow events silently.
    assert all(f.utm_campaign is None for f in sink.flow)


@pytest.mark.parametrize("campaign", ["page+referral", "a b", FIRSTRUN_CAMPAIGN + "x"])
async def test_other_plus_signs_stay_refused(client: Client, campaign: str) -> None:
    data = body([("flow.signin.submit", 4900)], utm_campaign=campaign)
    resp = await client.post("/metrics", json=data)
    assert resp.status == 400
    assert (await resp.json())["validation"]["keys"] == ["$.utm_campaign"]


async def test_configured_locales_apply_to_metrics_flow(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    rules: RuleTable,
    sink: MemorySink,
    registry: Registry,
) -> None:
    settings = override(settings, flow={"supported_locales": ["en", "de"], "default_locale": "de"})
    app = make_app(settings, rules=rules, sinks=[sink], stats=Stats(), registry=registry)
    client = await aiohttp_client(app)
    resp = await client.get("/metrics-flow", headers={"Accept-Language": "ja"})
    assert resp.status == 200
    await client.app[DISPATCHER].flush()
    assert sink.flow[0].locale == "de"
