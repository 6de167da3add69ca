"""The rule set: the rule table and the event registry, read from the same files at once.

A reload builds a new RuleSet and swaps it in with one assignment, so a request never
sees the rules of one reload with the registry of another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem
from . import DEFAULT_CACHE_SIZE, RuleTable, compile_sources, read_sources
from .registry import Registry, compile_registry


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: RuleTable
    registry: Registry = field(default_factory=Registry)


def read_ruleset(
    paths: Sequence[str | Path], cache_size: int = DEFAULT_CACHE_SIZE
) -> tuple[RuleSet | None, list[Problem], bool]:
    """The rule set under `paths` (None if any error) and every problem of it.

    The flag is true when the rule table itself does not compile (not only the registry).
    """
    sources, unreadable = read_sources(paths)
    table, problems = compile_sources((sources, unreadable), cache_size)
    registry, more = compile_registry(sources)
    problems += more
    if table is None or any(p.severity == "error" for p in more):
        return None, problems, table is None
    return RuleSet(table, registry), problems, False
