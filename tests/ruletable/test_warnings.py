"""Rule-table warnings: rules that never fire (`shadows.py`), lookup chains with gaps."""

from __future__ import annotations

from pathlib import Path

from router.ruletable import (
    load_rules,
)

from .rules import GROUPS, only, problems_for, write

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
