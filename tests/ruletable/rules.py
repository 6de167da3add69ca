"""Writing rule files and compiling in-memory rules for the rule-table tests."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from router.ruletable import Problem, RuleTable, check_rules, compile_rules_from_dict

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
