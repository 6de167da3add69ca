"""Rule-table compiler: checks, warnings, matching semantics, cache bound and explain()."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from router.ruletable import (
    Mapping,
    Output,
    Problem,
    RuleError,
    RuleTable,
    check_rules,
    compile_rules_from_dict,
    default_rules_path,
    load_rules,
)

GROUPS = """
[groups]
login = "fxa_login"
registration = "fxa_reg"
email = "fxa_email"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_for(tmp_path: Path, text: str, *, groups: bool = True) -> list[Problem]:
    if groups:
        write(tmp_path, "00-groups.toml", GROUPS)
    write(tmp_path, "rules.toml", text)
    return check_rules([tmp_path])


def only(problems: list[Problem], severity: str = "error") -> Problem:
    chosen = [p for p in problems if p.severity == severity]
    assert len(chosen) == 1, problems
    return chosen[0]


def table_from(data: dict[str, Any], **kwargs: Any) -> RuleTable:
    merged: dict[str, Any] = {
        "groups": {"login": "fxa_login", "registration": "fxa_reg", "email": "fxa_email"}
    }
    merged.update(data)
    return compile_rules_from_dict(merged, **kwargs)


# --- API shape -----------------------------------------------------------------------------


def test_default_rules_path_is_the_bundled_directory() -> None:
    path = default_rules_path()
    assert path.name == "rules"
    assert (path / "groups.toml").is_file()


def test_mapping_fields_for_exact_rule() -> None:
    table = table_from(
        {
            "exact": {
                "flow.x": {
                    "group": "login",
                    "event": "x",
                    "properties": {"kind": "static"},
                    "fields": {"plan_id": "planId"},
                    "also": [{"group": "login", "event": "complete", "delay_ms": 1}],
                    "minimal": True,
                    "vwo": "signin_complete",
                    "vwo_fields": ["planId"],
                }
            }
        }
    )
    assert table.match("flow.x") == Mapping(
        event_type="fxa_login - x",
        group="fxa_login",
        event="x",
        category=None,
        target=None,
        properties={"kind": "static"},
        fields=(("plan_id", "planId"),),
        also=(Output("fxa_login - complete", 1),),
        minimal=True,
        vwo="signin_complete",
        vwo_fields=("planId",),
        rule="<memory>: exact 'flow.x'",
    )
    assert (table.exact_count, table.fuzzy_count) == (1, 0)
    assert dict(table.groups) == dict(table.group_names)
    with pytest.raises(TypeError):
        table.groups["x"] = "y"  # type: ignore[index]


def test_fuzzy_mapping_category_target_and_rule_description() -> None:
    table = table_from(
        {
            "fuzzy": [
                {"name": "two", "match": r"^a\.(\w+)\.(\w+)$", "group": "login", "event": "{2}"}
            ]
        }
    )
    mapping = table.match("a.cat.tgt")
    assert mapping is not None
    assert (mapping.category, mapping.target, mapping.event_type) == (
        "cat",
        "tgt",
        "fxa_login - tgt",
    )
    assert mapping.rule == "<memory>: fuzzy 'two' (#1)"


def test_compile_from_several_in_memory_files() -> None:
    table = compile_rules_from_dict(
        [
            ("groups.toml", {"groups": {"login": "fxa_login"}}),
            ("a.toml", {"exact": {"x": {"group": "login", "event": "x"}}}),
        ]
    )
    mapping = table.match("x")
    assert mapping is not None and mapping.rule == "a.toml: exact 'x'"


def test_load_rules_raises_with_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "00-groups.toml", GROUPS)
    write(
        tmp_path,
        "bad.toml",
        """
        [exact."a"]
        group = "nope"
        event = "a"

        [exact."b"]
        group = "login"
        event = "b c"

        [[fuzzy]]
        match = '^(x'
        group = "login"
        event = "x"
        """,
    )
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    errors = [p for p in info.value.problems if p.severity == "error"]
    assert len(errors) == 3
    assert {p.where for p in errors} == {"exact 'a'", "exact 'b'", "fuzzy 'bad.toml#fuzzy[0]' (#1)"}
    assert "3 error(s)" in str(info.value)


def test_reserved_sections_are_ignored(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        """
        [registry]
        version = 1

        [events."account.created"]
        anything = "goes"
        """,
    )
    assert problems == []


def test_paths_in_order_and_directories_sorted(tmp_path: Path) -> None:
    one = tmp_path / "one"
    two = tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, "b.toml", "[[fuzzy]]\nmatch = '^x$'\ngroup = 'login'\nevent = 'from_b'\n")
    write(one, "a.toml", "[[fuzzy]]\nmatch = '^x$'\ngroup = 'login'\nevent = 'from_a'\n")
    write(two, "groups.toml", GROUPS)
    table = load_rules([one, two])
    assert getattr(table.match("x"), "event", None) == "from_a"
    assert any("same pattern" in w.message for w in table.warnings)
    table = load_rules([two, one / "b.toml", one / "a.toml"])
    assert getattr(table.match("x"), "event", None) == "from_b"


# --- errors --------------------------------------------------------------------------------


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, "[groups]\nlogin = \n"))
    assert problem.file.endswith("rules.toml")
    assert problem.line == 2
    assert "TOML syntax error" in problem.message


def test_type_error_carries_msgspec_path_and_line(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            """
            [exact."flow.x"]
            group = "login"
            event = 3
            """,
        )
    )
    assert "Expected `str`, got `int`" in problem.message
    assert '$.exact."flow.x".event' in problem.message
    assert problem.line == 2


def test_unknown_field_in_rule(tmp_path: Path) -> None:
    problem = only(
        problems_for(tmp_path, "[[fuzzy]]\nmatch = 'x'\ngroup = 'login'\nevent = 'x'\nevnt = 1\n")
    )
    assert "unknown field `evnt`" in problem.message
    assert "$.fuzzy[0]" in problem.message
    assert problem.line == 1


def test_unquoted_dotted_exact_name(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, "[exact.flow.x]\ngroup = 'login'\nevent = 'x'\n"))
    assert 'quote names that contain dots, e.g. [exact."flow.x"]' in problem.message
    assert problem.line == 1


def test_unknown_top_level_key(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, "[exactt.x]\ngroup = 'login'\nevent = 'x'\n"))
    assert "unknown top-level key 'exactt'" in problem.message
    assert problem.line == 1


def test_bad_group_value_type(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, "[groups]\nsub = 1\n"))
    assert problem.where == "groups.sub"
    assert "$.groups.sub" in problem.message
    assert problem.line == 2


def test_unknown_group_key(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, '[exact."x"]\ngroup = "signin"\nevent = "x"\n'))
    assert "unknown group key 'signin'" in problem.message
    assert problem.where == "exact 'x'"
    assert problem.line == 1


def test_unknown_lookup_table_or_filter(tmp_path: Path) -> None:
    problem = only(
        problems_for(tmp_path, "[[fuzzy]]\nmatch = '^(a)$'\ngroup = '{1|views}'\nevent = 'x'\n")
    )
    assert "unknown filter or lookup table 'views'" in problem.message


def test_capture_index_beyond_group_count(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            "[[fuzzy]]\nmatch = '^(a)$'\ngroup = 'login'\nevent = 'x'\n"
            "properties = { p = '{2}' }\n",
        )
    )
    assert "{2} refers to capture 2, but the pattern has 1 capture group(s)" in problem.message


def test_placeholder_in_exact_rule(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, '[exact."x"]\ngroup = "login"\nevent = "{1}"\n'))
    assert "exact rules have no captures" in problem.message


def test_regex_compile_error(tmp_path: Path) -> None:
    problem = only(
        problems_for(tmp_path, "[[fuzzy]]\nmatch = '^(a'\ngroup = 'login'\nevent = 'x'\n")
    )
    assert "bad regex" in problem.message and "missing )" in problem.message
    assert problem.line == 1


def test_bad_template_braces(tmp_path: Path) -> None:
    problem = only(
        problems_for(tmp_path, "[[fuzzy]]\nmatch = '^(a)$'\ngroup = 'login'\nevent = '{1|snake'\n")
    )
    assert "bad placeholder" in problem.message


def test_duplicate_exact_key_across_files(tmp_path: Path) -> None:
    write(tmp_path, "00-groups.toml", GROUPS)
    write(tmp_path, "a.toml", '\n[exact."x"]\ngroup = "login"\nevent = "x"\n')
    write(tmp_path, "b.toml", '[exact."x"]\ngroup = "login"\nevent = "y"\n')
    problem = only(check_rules([tmp_path]))
    assert problem.file.endswith("b.toml") and problem.line == 1
    assert "duplicate exact key" in problem.message and "a.toml line 2" in problem.message


def test_conflicting_group_definitions(tmp_path: Path) -> None:
    write(tmp_path, "00-groups.toml", GROUPS)
    write(tmp_path, "a.toml", '[groups]\nlogin = "fxa_login"\nemail = "fxa_mail"\n')
    problem = only(check_rules([tmp_path]))
    assert problem.where == "groups.email"
    assert "conflicts with 'fxa_email'" in problem.message
    assert problem.line == 3


def test_conflicting_lookup_entries(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", "[lookups.v]\nx = 'login'\n")
    write(tmp_path, "b.toml", "[lookups.v]\nx = 'email'\n")
    problem = only(check_rules([tmp_path]))
    assert problem.where == "lookups.v.x" and problem.line == 2


def test_static_event_type_that_can_never_be_valid(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, '[exact."x"]\ngroup = "login"\nevent = "forgot-pwd"\n'))
    assert "can never match" in problem.message


def test_event_literal_that_can_never_be_valid(tmp_path: Path) -> None:
    problem = only(
        problems_for(tmp_path, "[[fuzzy]]\nmatch = '^(a)$'\ngroup = 'login'\nevent = '{1}-view'\n")
    )
    assert "literal text '-view'" in problem.message


def test_bad_group_name(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, '[groups]\nweird = "fxa weird"\n'))
    assert "must match" in problem.message


@pytest.mark.parametrize("vwo", ["", "signup complete", "a/b", "1abc"])
def test_bad_vwo_name(tmp_path: Path, vwo: str) -> None:
    problem = only(
        problems_for(tmp_path, f'[exact."x"]\ngroup = "login"\nevent = "x"\nvwo = "{vwo}"\n')
    )
    assert "bad vwo name" in problem.message


def test_vwo_fields_without_vwo(tmp_path: Path) -> None:
    problem = only(
        problems_for(tmp_path, '[exact."x"]\ngroup = "login"\nevent = "x"\nvwo_fields = ["a"]\n')
    )
    assert "vwo_fields given without vwo" in problem.message


def test_property_in_both_properties_and_fields(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            '[exact."x"]\ngroup = "login"\nevent = "x"\n'
            'properties = { a = "1" }\nfields = { a = "b" }\n',
        )
    )
    assert "both properties and fields" in problem.message


def test_lookup_used_as_group_must_give_group_keys(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            "[lookups.v]\nsignin = 'login'\nsignup = 'signup'\n"
            "[[fuzzy]]\nmatch = '^(a)$'\ngroup = '{1|v}'\nevent = 'x'\n",
        )
    )
    assert "not group keys: 'signup'" in problem.message


def test_negative_delay(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            '[exact."x"]\ngroup = "login"\nevent = "x"\n'
            'also = [{ group = "login", event = "y", delay_ms = -1 }]\n',
        )
    )
    assert "delay_ms must be >= 0" in problem.message


def test_missing_path(tmp_path: Path) -> None:
    problem = only(check_rules([tmp_path / "nope"]))
    assert "no such file" in problem.message


def test_all_problems_reported_together(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        """
        bogus = 1
        [groups]
        login = "fxa_login2"
        [exact."a"]
        group = "nope"
        event = "a"
        [exact."b"]
        group = 1
        event = "b"
        [[fuzzy]]
        match = '^(x'
        group = "login"
        event = "x"
        [[fuzzy]]
        match = '^(y)$'
        group = "{1|missing}"
        event = "y"
        """,
    )
    assert len([p for p in problems if p.severity == "error"]) == 6
    assert all(p.line is not None for p in problems)


# --- warnings ------------------------------------------------------------------------------


def test_warning_identical_pattern(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            """
            [[fuzzy]]
            name = "first"
            match = '^a\\.(\\w+)$'
            group = "login"
            event = "x"

            [[fuzzy]]
            name = "second"
            match = '^a\\.(\\w+)$'
            group = "login"
            event = "y"
            """,
        ),
        "warning",
    )
    assert problem.where == "fuzzy 'second' (#2)"
    assert "same pattern as earlier fuzzy 'first' (#1)" in problem.message
    assert problem.line == 8


def test_warning_fuzzy_rule_matching_only_exact_keys(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            """
            [exact."screen.a"]
            group = "login"
            event = "a"
            [exact."screen.b"]
            group = "login"
            event = "b"

            [[fuzzy]]
            match = '^screen\\.(a|b)$'
            group = "login"
            event = "{1}"
            """,
        ),
        "warning",
    )
    assert "never fires: every name it matches (2) is an exact key" in problem.message


def test_no_warning_when_one_name_is_not_an_exact_key(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        '[exact."screen.a"]\ngroup = "login"\nevent = "a"\n'
        "[[fuzzy]]\nmatch = '^screen\\.(a|b)$'\ngroup = 'login'\nevent = '{1}'\n",
    )
    assert problems == []


def test_warning_shadowed_by_earlier_fuzzy_rule(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            """
            [[fuzzy]]
            name = "broad"
            match = '^flow\\.([\\w-]+)\\.submit$'
            group = "login"
            event = "submit"

            [[fuzzy]]
            name = "narrow"
            match = '^flow\\.(signin|signup-[a-z]+)\\.submit$'
            group = "registration"
            event = "submit"
            """,
        ),
        "warning",
    )
    assert problem.where == "fuzzy 'narrow' (#2)"
    assert "probably never fires: every sample" in problem.message
    assert "earlier rule fuzzy 'broad' (#1)" in problem.message


def test_warning_shadowed_by_several_earlier_rules(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            """
            [[fuzzy]]
            name = "signin"
            match = '^flow\\.signin\\.'
            group = "login"
            event = "a"

            [[fuzzy]]
            name = "signup"
            match = '^flow\\.signup\\.'
            group = "login"
            event = "b"

            [[fuzzy]]
            name = "both"
            match = '^flow\\.(signin|signup)\\.go$'
            group = "login"
            event = "c"
            """,
        ),
        "warning",
    )
    assert "never fires: every name it matches also matches earlier rules" in problem.message
    assert "'signin' (#1)" in problem.message and "'signup' (#2)" in problem.message


def test_no_warning_when_later_rule_is_broader(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        """
        [[fuzzy]]
        match = '^flow\\.(signin|signup)\\.submit$'
        group = "login"
        event = "x"

        [[fuzzy]]
        match = '^flow\\.([\\w-]+)\\.submit$'
        group = "login"
        event = "y"
        """,
    )
    assert problems == []


def test_warning_lookup_chain_gap(tmp_path: Path) -> None:
    problem = only(
        problems_for(
            tmp_path,
            """
            [lookups.types]
            verify-email = "registration"
            complete-signin = "login"
            [lookups.type_groups]
            registration = "email"

            [[fuzzy]]
            match = '^([\\w-]+)\\.clicked$'
            group = "{1|types|type_groups}"
            event = "click"
            """,
        ),
        "warning",
    )
    assert "missing from 'type_groups' never resolve: 'login'" in problem.message


def test_warnings_do_not_stop_loading(tmp_path: Path) -> None:
    write(tmp_path, "00-groups.toml", GROUPS)
    write(
        tmp_path,
        "r.toml",
        "[[fuzzy]]\nmatch = '^a$'\ngroup = 'login'\nevent = 'a'\n"
        "[[fuzzy]]\nmatch = '^a$'\ngroup = 'login'\nevent = 'b'\n",
    )
    table = load_rules([tmp_path])
    assert [w.severity for w in table.warnings] == ["warning"]


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
