"""Problems found in rule files, and the error that carries all of them."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["RuleError", "RuleProblem"]


class RuleProblem(msgspec.Struct, frozen=True):
    """One error or warning, located as precisely as the source allows."""

    file: str
    rule: str
    message: str
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.severity}: [{self.rule}] {self.message}"


class RuleError(Exception):
    """Raised by load_rules when any error-severity problem exists; lists every problem."""

    problems: list[RuleProblem]

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        errors = sum(p.severity == "error" for p in problems)
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{errors} error(s) in rule files:\n{lines}")
