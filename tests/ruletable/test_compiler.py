"""Rule-table compiler: the API, and every error with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

import router
from router.ruletable import (
    Mapping,
    Output,
    RuleError,
    check_rules,
    compile_rules_from_dict,
    default_rules_path,
    load_rules,
)

from .rules import GROUPS, only, problems_for, table_from, write

# --- API shape -----------------------------------------------------------------------------


def test_default_rules_path_is_the_bundled_directory() -> None:
    path = default_rules_path()
    # Package data inside `router`, so a wheel carries it (tests/test_wheel.py installs one).
    assert path == Path(router.__file__).parent / "rules"
    assert (path / "groups.toml").is_file() and (path / "registry.toml").is_file()


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
