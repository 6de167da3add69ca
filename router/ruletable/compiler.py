"""Read rule files, check them all at once, and compile them into a RuleTable."""

from __future__ import annotations

import re
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem, RuleError
from .binder import WORD, Binder, Report
from .schema import decode_rule_file
from .shadows import shadow_warnings
from .sources import Source, default_rules_path, read_sources
from .table import DEFAULT_CACHE_SIZE, CompiledRule, Mapping, RuleTable
from .template import Filter

__all__ = [
    "check_rules",
    "compile_rules_from_dict",
    "compile_sources",
    "default_rules_path",
    "load_rules",
]


def load_rules(paths: Sequence[str | Path], *, cache_size: int = DEFAULT_CACHE_SIZE) -> RuleTable:
    """Compile every rule file under `paths`; raise RuleError listing all problems."""
    table, problems = compile_sources(read_sources(paths), cache_size)
    if table is None:
        raise RuleError(problems)
    return table


def check_rules(paths: Sequence[str | Path]) -> list[Problem]:
    """Every error and warning in the rule files under `paths`; never raises for them."""
    return compile_sources(read_sources(paths), DEFAULT_CACHE_SIZE)[1]


def compile_rules_from_dict(
    data: AbcMapping[str, Any] | Sequence[tuple[str, AbcMapping[str, Any]]],
    *,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> RuleTable:
    """Build a RuleTable from in-memory rule data (one file's dict, or (name, dict) pairs)."""
    if isinstance(data, AbcMapping):
        pairs: Sequence[tuple[str, AbcMapping[str, Any]]] = [("<memory>", data)]
    else:
        pairs = data
    sources = [Source(name, None, dict(raw)) for name, raw in pairs]
    table, problems = compile_sources((sources, []), cache_size)
    if table is None:
        raise RuleError(problems)
    return table


@dataclass
class _Located:
    """Where a group/lookup entry was first defined, for conflict messages."""

    value: str
    file: str
    line: int | None


def compile_sources(
    read: tuple[list[Source], list[Problem]], cache_size: int
) -> tuple[RuleTable | None, list[Problem]]:
    sources, problems = read
    report = Report(list(problems))
    decoded = []
    for src in sources:
        assert src.raw is not None
        rule_file, schema_problems = decode_rule_file(src.raw)
        for rule, message in schema_problems:
            report.add(src, rule, message, _schema_line(src, rule))
        decoded.append((src, rule_file))

    groups = _merge_groups(decoded, report)
    lookups = _merge_lookups(decoded, report)
    filters = {name: Filter(name, table.get, table) for name, table in lookups.items()}
    binder = Binder(groups, filters, report)

    exact_rules: dict[str, CompiledRule] = {}
    exact: dict[str, Mapping] = {}
    fuzzy: list[CompiledRule] = []
    for src, rule_file in decoded:
        for key, spec in rule_file.exact.items():
            line = src.exact_line(key)
            label = f"exact {key!r}"
            if key in exact_rules:
                first = exact_rules[key]
                report.add(
                    src,
                    label,
                    f"duplicate exact key, first defined in {_at(first.file, first.line)}",
                    line,
                )
                continue
            compiled = binder.compile(src, spec, label, f"{src.file}: {label}", line, None, 0)
            if compiled is None:
                continue
            mapping, why = compiled.build((), groups)
            if mapping is None:
                report.add(src, label, f"yields no mapping: {why}", line)
                continue
            exact_rules[key] = compiled
            exact[key] = mapping
        for i, fspec in enumerate(rule_file.fuzzy):
            if fspec is None:
                continue
            index = len(fuzzy) + 1
            line = src.fuzzy_line(i)
            name = fspec.name or f"{Path(src.file).name}#fuzzy[{i}]"
            label = f"fuzzy {name!r} (#{index})"
            try:
                pattern = re.compile(fspec.match, re.ASCII)
            except re.error as exc:
                report.add(src, label, f"bad regex {fspec.match!r}: {exc}", line)
                continue
            compiled = binder.compile(
                src, fspec, label, f"{src.file}: {label}", line, pattern, index
            )
            if compiled is not None:
                fuzzy.append(compiled)

    shadow_warnings(fuzzy, set(exact), sources, report)
    if report.has_errors:
        return None, report.problems
    warnings = [p for p in report.problems if p.severity == "warning"]
    table = RuleTable(
        groups, exact, fuzzy, warnings, exact_rules=exact_rules, cache_size=cache_size
    )
    return table, report.problems


def _schema_line(src: Source, rule: str) -> int | None:
    m = re.match(r"exact '(.*)'$", rule)
    if m:
        return src.exact_line(m.group(1))
    m = re.search(r"fuzzy\[(\d+)\]", rule)
    if m:
        return src.fuzzy_line(int(m.group(1)))
    section, _, key = rule.partition(".")
    if key:
        if section == "lookups":
            table, _, entry = key.partition(".")
            return src.key_line(f"lookups.{table}", entry) if entry else src.section_line(rule)
        return src.key_line(section, key)
    return src.section_line(section)


def _at(file: str, line: int | None) -> str:
    return file if line is None else f"{file} line {line}"


def _merge_entry(
    seen: dict[str, _Located],
    key: str,
    value: str,
    src: Source,
    line: int | None,
    where: str,
    what: str,
    report: Report,
) -> None:
    """Keep the first definition of `key`; a later, different value is an error naming it."""
    first = seen.get(key)
    if first is None:
        seen[key] = _Located(value, src.file, line)
    elif first.value != value:
        message = f"{what} conflicts with {first.value!r} from {_at(first.file, first.line)}"
        report.add(src, where, message, line)


def _merge_groups(decoded: list[tuple[Source, Any]], report: Report) -> dict[str, str]:
    seen: dict[str, _Located] = {}
    for src, rule_file in decoded:
        for key, name in rule_file.groups.items():
            line = src.key_line("groups", key)
            if not WORD.match(name):
                report.add(src, f"groups.{key}", f"group name {name!r} must match ^\\w+$", line)
                continue
            what = f"group {key!r} = {name!r}"
            _merge_entry(seen, key, name, src, line, f"groups.{key}", what, report)
    return {key: loc.value for key, loc in seen.items()}


def _merge_lookups(decoded: list[tuple[Source, Any]], report: Report) -> dict[str, dict[str, str]]:
    seen: dict[str, dict[str, _Located]] = {}
    for src, rule_file in decoded:
        for table, entries in rule_file.lookups.items():
            if table == "snake":
                report.add(
                    src,
                    f"lookups.{table}",
                    "'snake' is a built-in filter; pick another table name",
                    src.section_line(f"lookups.{table}"),
                )
                continue
            merged = seen.setdefault(table, {})
            for key, value in entries.items():
                line = src.key_line(f"lookups.{table}", key)
                where, what = f"lookups.{table}.{key}", f"{key!r} = {value!r}"
                _merge_entry(merged, key, value, src, line, where, what, report)
    return {t: {k: loc.value for k, loc in entries.items()} for t, entries in seen.items()}
