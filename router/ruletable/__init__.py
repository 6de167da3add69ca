"""The rule table: compiles rule files into an exact dict plus ordered fuzzy regexes.

`sources` reads the files once; `compiler` checks and compiles them (`binder` one rule,
`shadows` the rules that never fire) into a `table`; `registry` takes the server-side event
types from the same read, and `ruleset` holds both, swapped whole on reload.

Public API (used by the HTTP service):

- `load_rules(paths)` -> `RuleTable`, raising `RuleError` that lists every problem;
- `check_rules(paths)` -> every error and warning, never raising for rule problems;
- `read_sources(paths)` + `compile_sources(...)`: the same in two steps, so the event
  registry is built from the same read (`router.ruletable.ruleset`);
- `RuleTable.match(name)` -> `Mapping | None` (hot path, cached), `RuleTable.explain(name)`;
- `default_rules_path()` -> the bundled `router/rules/` directory (package data);
- `compile_rules_from_dict(data)` for tests and benchmarks.
"""

from ..errors import Problem, RuleError
from .compiler import check_rules, compile_rules_from_dict, compile_sources, load_rules
from .sources import Source, default_rules_path, read_sources
from .table import DEFAULT_CACHE_SIZE, Mapping, Output, RuleTable

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "Mapping",
    "Output",
    "Problem",
    "RuleError",
    "RuleTable",
    "Source",
    "check_rules",
    "compile_rules_from_dict",
    "compile_sources",
    "default_rules_path",
    "load_rules",
    "read_sources",
]
