"""The rule table: compiles rule files into an exact dict plus ordered fuzzy regexes.

Public API (used by the HTTP service):

- `load_rules(paths)` -> `RuleTable`, raising `RuleError` that lists every problem;
- `check_rules(paths)` -> every error and warning, never raising for rule problems;
- `RuleTable.match(name)` -> `Mapping | None` (hot path, cached), `RuleTable.explain(name)`;
- `default_rules_path()` -> the bundled `router/rules/` directory (package data);
- `compile_rules_from_dict(data)` for tests and benchmarks.
"""

from .compiler import check_rules, compile_rules_from_dict, default_rules_path, load_rules
from .problems import RuleError, RuleProblem
from .table import DEFAULT_CACHE_SIZE, Mapping, Output, RuleTable

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "Mapping",
    "Output",
    "RuleError",
    "RuleProblem",
    "RuleTable",
    "check_rules",
    "compile_rules_from_dict",
    "default_rules_path",
    "load_rules",
]
