# TEMPORARY STUB (not committed): replaced by the rules branch.
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec


class Output(msgspec.Struct, frozen=True):
    event_type: str
    delay_ms: int


class Mapping(msgspec.Struct, frozen=True):
    event_type: str
    group: str
    event: str
    category: str | None = None
    target: str | None = None
    properties: dict[str, str] = {}
    fields: tuple[tuple[str, str], ...] = ()
    also: tuple[Output, ...] = ()
    minimal: bool = False
    vwo: str | None = None
    vwo_fields: tuple[str, ...] = ()
    rule: str = ""


class RuleProblem(msgspec.Struct, frozen=True):
    file: str
    rule: str
    message: str
    line: int | None = None
    severity: str = "error"


class RuleError(Exception):
    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems


class RuleTable:
    exact_count = 2
    fuzzy_count = 0

    def match(self, name: str) -> Mapping | None:
        if name == "flow.signin.submit":
            return Mapping("fxa_login - submit", "fxa_login", "submit")
        if name == "screen.signin":
            return Mapping("fxa_login - view", "fxa_login", "view")
        if name == "screen.signup":
            return Mapping("fxa_reg - view", "fxa_reg", "view")
        if name == "flow.signin.engage":
            return Mapping("fxa_login - engage", "fxa_login", "engage")
        return None

    def explain(self, name: str) -> str:
        return name


def load_rules(paths: Sequence[Any]) -> RuleTable:
    return RuleTable()


def check_rules(paths: Sequence[Any]) -> list[RuleProblem]:
    return []


def default_rules_path() -> Path:
    return Path(__file__).resolve().parents[2] / "rules"
