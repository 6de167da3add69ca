"""The bundled rules against expectations transcribed by hand from FxA's tables and tests."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from router.ruletable import RuleTable, check_rules, default_rules_path, load_rules

DATA = Path(__file__).parents[1] / "data" / "rule_expectations.toml"
EXPECT: dict[str, Any] = tomllib.loads(DATA.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def table() -> RuleTable:
    return load_rules([default_rules_path()])


def test_bundled_rules_have_no_problems() -> None:
    assert check_rules([default_rules_path()]) == []


def test_bundled_counts(table: RuleTable) -> None:
    # content server 131 + auth server 12 + 2 VWO additions; fuzzy 30 + 3.
    assert (table.exact_count, table.fuzzy_count) == (145, 33)
    assert table.warnings == []


def test_every_bundled_exact_entry_has_an_expectation(table: RuleTable) -> None:
    bundled = {name for name in EXPECT["exact"] if table.match(name) is not None}
    assert table.exact_count == len(EXPECT["exact"]) == len(bundled)


@pytest.mark.parametrize(("name", "event_type"), sorted(EXPECT["exact"].items()))
def test_exact(table: RuleTable, name: str, event_type: str) -> None:
    mapping = table.match(name)
    assert mapping is not None
    assert mapping.event_type == event_type
    assert ": exact " in mapping.rule
    assert (mapping.category, mapping.target) == (None, None)


FUZZY = [pytest.param(case, id=case["name"]) for case in EXPECT["fuzzy"]]


@pytest.mark.parametrize("case", FUZZY)
def test_fuzzy_example(table: RuleTable, case: dict[str, Any]) -> None:
    mapping = table.match(case["name"])
    assert mapping is not None, table.explain(case["name"])
    assert mapping.event_type == case["event_type"]
    assert f"fuzzy {case['rule']!r}" in mapping.rule
    if "properties" in case:
        assert mapping.properties == case["properties"]


def test_every_fuzzy_rule_has_a_positive_example(table: RuleTable) -> None:
    fired = {table.match(case["name"]).rule for case in EXPECT["fuzzy"]}  # type: ignore[union-attr]
    fuzzy_rules = {r for r in fired if ": fuzzy " in r}
    assert len(fuzzy_rules) == table.fuzzy_count


@pytest.mark.parametrize("name", EXPECT["drop"]["names"])
def test_dropped(table: RuleTable, name: str) -> None:
    assert table.match(name) is None, table.explain(name)


# --- group-specific properties and flags (fxa-shared, auth server) ------------------------


def test_account_reset_also_emits_login_complete_1ms_later(table: RuleTable) -> None:
    mapping = table.match("account.reset")
    assert mapping is not None
    assert [(o.event_type, o.delay_ms) for o in mapping.also] == [("fxa_login - complete", 1)]


@pytest.mark.parametrize("name", ["token.created", "verify.success"])
def test_minimal_entries(table: RuleTable, name: str) -> None:
    mapping = table.match(name)
    assert mapping is not None and mapping.minimal


def test_not_minimal_by_default(table: RuleTable) -> None:
    mapping = table.match("oauth.token.created")
    assert mapping is not None and not mapping.minimal


def test_email_fields(table: RuleTable) -> None:
    clicked = table.match("complete-signin.verification.clicked")
    assert clicked is not None
    assert dict(clicked.fields) == {"email_provider": "emailDomain"}
    sent = table.match("email.verifyLoginCode.sent")
    assert sent is not None
    assert dict(sent.fields) == {
        "email_provider": "emailDomain",
        "email_version": "templateVersion",
    }
    assert sent.properties == {"email_type": "login", "email_template": "verifyLoginCode"}


@pytest.mark.parametrize(
    "name",
    ["flow.subscribe.submit", "screen.subscribe", "flow.support.engage", "flow.support.view"],
)
def test_subscription_fields(table: RuleTable, name: str) -> None:
    mapping = table.match(name)
    assert mapping is not None
    assert dict(mapping.fields) == {"plan_id": "planId", "product_id": "productId"}


def test_subscription_ended_fields(table: RuleTable) -> None:
    mapping = table.match("subscription.ended")
    assert mapping is not None
    fields = dict(mapping.fields)
    assert fields["plan_id"] == "planId"
    assert fields["voluntary_cancellation"] == "voluntary_cancellation"


@pytest.mark.parametrize(
    ("name", "vwo"),
    [("flow.complete.registration", "signup_complete"), ("flow.complete.login", "signin_complete")],
)
def test_vwo_conversions(table: RuleTable, name: str, vwo: str) -> None:
    mapping = table.match(name)
    assert mapping is not None and mapping.vwo == vwo


def test_reference_examples(table: RuleTable) -> None:
    # shared/reference/fxa-metrics.md §4 examples.
    examples = {
        "flow.reset-password.submit": "fxa_login - forgot_submit",
        "screen.choose-what-to-sync": "fxa_reg - cwts_view",
        "cached.signin.success": "fxa_login - complete",
        "flow.rp.engage": "fxa_rp - engage",
        "settings.signout.success": "fxa_pref - logout",
        "screen.pair": "fxa_connect_device - pair_view",
        "flow.signin.engage": "fxa_login - engage",
        "flow.signup.submit": "fxa_reg - submit",
        "screen.enter-email": "fxa_email_first - view",
        "screen.oauth.signin": "fxa_login - view",
        "screen.rp-button": "fxa_rp_button - view",
        "screen.support": "fxa_subscribe_support - view",
        "flow.wibble.forgot-password": "fxa_login - forgot_pwd",
        "flow.wibble.have-account": "fxa_reg - have_account",
        "complete-reset-password.verification.clicked": "fxa_email - click",
        "settings.clients.disconnect.submit.suspicious": "fxa_pref - disconnect_device",
        "email.verify.bounced": "fxa_email - bounced",
        "flow.complete.registration": "fxa_reg - complete",
    }
    got = {name: getattr(table.match(name), "event_type", None) for name in examples}
    assert got == examples
