"""The compiled rule table: matching semantics, the bounded cache and explain()."""

from __future__ import annotations

import pytest

from router.ruletable import RuleTable, default_rules_path, load_rules

from .rules import table_from

# --- matching semantics --------------------------------------------------------------------


def test_exact_beats_fuzzy_and_first_fuzzy_match_wins() -> None:
    table = table_from(
        {
            "exact": {"flow.signin.submit": {"group": "login", "event": "exact"}},
            "fuzzy": [
                {"match": r"^flow\.signup\.", "group": "registration", "event": "first"},
                {"match": r"^flow\.([\w-]+)\.submit$", "group": "login", "event": "second"},
                {"match": r"^flow\.", "group": "login", "event": "third"},
            ],
        }
    )
    assert getattr(table.match("flow.signin.submit"), "event", None) == "exact"
    assert getattr(table.match("flow.signup.submit"), "event", None) == "first"
    assert getattr(table.match("flow.other.submit"), "event", None) == "second"
    assert getattr(table.match("flow.other.engage"), "event", None) == "third"


def test_first_match_decides_even_when_it_drops() -> None:
    table = table_from(
        {
            "lookups": {"views": {"signin": "login"}},
            "fuzzy": [
                {"match": r"^flow\.([\w-]+)\.engage$", "group": "{1|views}", "event": "engage"},
                {"match": r"^flow\.", "group": "login", "event": "fallback"},
            ],
        }
    )
    assert getattr(table.match("flow.signin.engage"), "event_type", None) == "fxa_login - engage"
    assert table.match("flow.reset-password.engage") is None  # FxA: no fall-through


def test_unresolved_placeholders() -> None:
    table = table_from(
        {
            "lookups": {"flows": {"pair": "pairing"}},
            "fuzzy": [
                {
                    "match": r"^x\.(a|b)?\.?(\w+)$",
                    "group": "login",
                    "event": "{1}_{2}",
                },
                {
                    "match": r"^y\.([\w-]+)(?:\.(\w+))?$",
                    "group": "login",
                    "event": "{1|snake}",
                    "properties": {"flow": "{1|flows}", "os": "{2}", "fixed": "k"},
                    "also": [{"group": "login", "event": "also_{2}"}],
                },
            ],
        }
    )
    assert getattr(table.match("x.a.go"), "event", None) == "a_go"
    assert table.match("x.go") is None  # capture 1 did not participate: dropped
    full = table.match("y.pair.ios")
    assert full is not None
    assert full.properties == {"flow": "pairing", "os": "ios", "fixed": "k"}
    assert [o.event_type for o in full.also] == ["fxa_login - also_ios"]
    partial = table.match("y.some-view")
    assert partial is not None
    assert partial.event == "some_view"
    assert partial.properties == {"fixed": "k"}  # unresolved properties are left out
    assert partial.also == ()


def test_group_template_must_resolve_to_a_group_key() -> None:
    table = table_from(
        {"fuzzy": [{"match": r"^flow\.complete\.(\w+)$", "group": "{1}", "event": "complete"}]}
    )
    assert getattr(table.match("flow.complete.login"), "event_type", None) == "fxa_login - complete"
    assert table.match("flow.complete.undefined") is None


def test_runtime_event_type_must_be_word_characters() -> None:
    table = table_from({"fuzzy": [{"match": r"^ev\.(.+)$", "group": "login", "event": "{1}"}]})
    assert getattr(table.match("ev.ok_1"), "event_type", None) == "fxa_login - ok_1"
    assert table.match("ev.not ok") is None
    assert table.match("ev.dot.ted") is None


def test_ascii_word_characters_like_javascript() -> None:
    table = table_from({"fuzzy": [{"match": r"^flow\.(\w+)$", "group": "login", "event": "{1}"}]})
    assert table.match("flow.signin") is not None
    assert table.match("flow.sïgnin") is None


def test_trailing_newline_never_matches_fuzzy() -> None:
    table = table_from({"fuzzy": [{"match": r"^flow\.(\w+)$", "group": "login", "event": "x"}]})
    assert table.match("flow.a") is not None
    assert table.match("flow.a\n") is None


# --- cache ---------------------------------------------------------------------------------


def test_cache_is_bounded_under_distinct_names() -> None:
    table = table_from(
        {"fuzzy": [{"match": r"^flow\.([\w-]+)\.engage$", "group": "login", "event": "engage"}]},
        cache_size=1000,
    )
    for i in range(1000):
        table.match(f"flow.v{i}.engage")
    assert table.cache_len == 1000  # full
    peak = 0
    for i in range(200_000):
        table.match(f"hostile.{i}" if i % 2 else f"flow.x{i}.engage")
        peak = max(peak, table.cache_len)
    assert peak == 1000  # reaches its bound and never exceeds it
    assert len(table._memo) <= 1000  # exact names + cached results


def test_default_cache_stays_bounded() -> None:
    table = load_rules([default_rules_path()])
    for i in range(200_000):
        table.match(f"flow.hostile{i}.engage")
    assert 0 < table.cache_len <= table.cache_size


def test_repeated_names_are_served_from_cache() -> None:
    table = table_from(
        {
            "fuzzy": [
                {"match": rf"^r{i}\.(\w+)$", "group": "login", "event": "{1}"} for i in range(300)
            ]
        }
    )
    first = table.match("r299.go")
    assert first is not None
    size = table.cache_len
    assert table.match("r299.go") is first  # same object: no rebuild, no regex scan
    assert table.match("nothing") is None
    assert table.match("nothing") is None  # negative results are cached too
    assert table.cache_len == size + 1
    table.cache_clear()
    assert table.cache_len == 0
    assert table.match("r299.go") == first


def test_exact_names_do_not_use_the_cache() -> None:
    table = table_from({"exact": {"a": {"group": "login", "event": "a"}}}, cache_size=1)
    for _ in range(3):
        assert table.match("a") is not None
    assert table.cache_len == 0


def test_many_generated_fuzzy_rules_compile_without_warnings() -> None:
    table = table_from(
        {
            "fuzzy": [
                {"match": rf"^bench\.rule{i}\.([\w-]+)$", "group": "login", "event": f"e{i}"}
                for i in range(1000)
            ]
        }
    )
    assert table.fuzzy_count == 1000
    assert table.warnings == []
    assert getattr(table.match("bench.rule999.x"), "event", None) == "e999"


# --- explain -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> RuleTable:
    return load_rules([default_rules_path()])


def test_explain_exact(bundled: RuleTable) -> None:
    text = bundled.explain("account.reset")
    assert "matched rules/auth-server.toml: exact 'account.reset' (line " in text
    assert "-> fxa_login - forgot_complete" in text
    assert "also: fxa_login - complete (+1 ms)" in text


def test_explain_fuzzy(bundled: RuleTable) -> None:
    text = bundled.explain("settings.clients.disconnect.submit.lost")
    assert "no exact rule" in text
    assert "fuzzy 'disconnect-device'" in text
    assert "captures: 1='lost'" in text
    assert "-> fxa_pref - disconnect_device" in text
    assert "reason='lost'" in text


def test_explain_dropped_by_unresolved_group(bundled: RuleTable) -> None:
    text = bundled.explain("flow.reset-password.engage")
    assert "fuzzy 'view-engage'" in text
    assert "dropped" in text
    assert "lookup 'view_groups' has no key 'reset-password'" in text


def test_explain_no_rule(bundled: RuleTable) -> None:
    text = bundled.explain("nothing.matches")
    assert "no fuzzy rule matches (33 tried)" in text
    assert "-> dropped" in text


def test_explain_flags(bundled: RuleTable) -> None:
    assert "minimal" in bundled.explain("token.created")
    assert "VWO conversion: signup_complete" in bundled.explain("flow.complete.registration")
    assert "plan_id<-planId" in bundled.explain("screen.subscribe")
