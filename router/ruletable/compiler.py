"""Read rule files, check them all at once, and compile them into a RuleTable."""

from __future__ import annotations

import re
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import Problem, RuleError
from .samples import enumerate_language, sample_strings
from .schema import ExactSpec, FuzzySpec, decode_rule_file
from .sources import Source, default_rules_path, read_sources
from .table import DEFAULT_CACHE_SIZE, EVENT_TYPE, CompiledRule, Mapping, RuleTable
from .template import Filter, Template, TemplateError, parse_template, snake

__all__ = [
    "check_rules",
    "compile_rules_from_dict",
    "compile_sources",
    "default_rules_path",
    "load_rules",
]

SNAKE = Filter("snake", snake)
_WORD = re.compile(r"^\w+\Z", re.ASCII)
_FIELD = re.compile(r"^[A-Za-z_][\w.]*\Z", re.ASCII)
# VWO matches a conversion by its metric `identifier`; keep names plain so a typo with a
# space or slash is caught here rather than as a silent "event not found" from VWO.
_VWO_NAME = re.compile(r"^[A-Za-z][\w.-]{0,254}\Z", re.ASCII)
_ENUMERATION_LIMIT = 512


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


# --- reading -----------------------------------------------------------------------------


# --- compiling ---------------------------------------------------------------------------


class _Report:
    """Collects every problem, so one bad rule never hides the next."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems

    def add(
        self,
        src: Source,
        rule: str,
        message: str,
        line: int | None,
        severity: Literal["error", "warning"] = "error",
    ) -> None:
        self.problems.append(
            Problem(file=src.file, line=line, severity=severity, where=rule, message=message)
        )

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


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
    report = _Report(list(problems))
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
    binder = _Binder(groups, filters, report)

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
                    f"duplicate exact key, first defined in {first.file}"
                    f"{'' if first.line is None else f' line {first.line}'}",
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

    _shadow_warnings(fuzzy, set(exact), sources, report)
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


def _merge_groups(decoded: list[tuple[Source, Any]], report: _Report) -> dict[str, str]:
    seen: dict[str, _Located] = {}
    for src, rule_file in decoded:
        for key, name in rule_file.groups.items():
            line = src.key_line("groups", key)
            if not _WORD.match(name):
                report.add(src, f"groups.{key}", f"group name {name!r} must match ^\\w+$", line)
                continue
            first = seen.get(key)
            if first is None:
                seen[key] = _Located(name, src.file, line)
            elif first.value != name:
                report.add(
                    src,
                    f"groups.{key}",
                    f"group {key!r} = {name!r} conflicts with {first.value!r} "
                    f"from {first.file}{'' if first.line is None else f' line {first.line}'}",
                    line,
                )
    return {key: loc.value for key, loc in seen.items()}


def _merge_lookups(decoded: list[tuple[Source, Any]], report: _Report) -> dict[str, dict[str, str]]:
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
                first = merged.get(key)
                if first is None:
                    merged[key] = _Located(value, src.file, line)
                elif first.value != value:
                    report.add(
                        src,
                        f"lookups.{table}.{key}",
                        f"{key!r} = {value!r} conflicts with {first.value!r} from {first.file}"
                        f"{'' if first.line is None else f' line {first.line}'}",
                        line,
                    )
    return {t: {k: loc.value for k, loc in entries.items()} for t, entries in seen.items()}


class _Binder:
    """Parses a rule's templates, binds filters and runs the per-rule checks."""

    def __init__(self, groups: dict[str, str], filters: dict[str, Filter], report: _Report) -> None:
        self.groups = groups
        self.filters = filters
        self.report = report

    def compile(
        self,
        src: Source,
        spec: ExactSpec | FuzzySpec,
        label: str,
        description: str,
        line: int | None,
        pattern: re.Pattern[str] | None,
        index: int,
    ) -> CompiledRule | None:
        captures = pattern.groups if pattern is not None else 0
        before = len(self.report.problems)

        def err(message: str) -> None:
            self.report.add(src, label, message, line)

        def template(text: str, what: str) -> Template | None:
            return self._template(src, label, line, text, what, captures)

        group = template(spec.group, "group")
        event = template(spec.event, "event")
        if group is not None:
            self._check_group(group, "group", err)
        if group is not None and event is not None:
            self._check_event_type(group, event, "event_type", err)

        properties: list[tuple[str, Template]] = []
        for prop, text in spec.properties.items():
            if not _WORD.match(prop):
                err(f"property name {prop!r} must match ^\\w+$")
            t = template(text, f"properties.{prop}")
            if t is not None:
                properties.append((prop, t))
        for prop, request_field in spec.fields.items():
            if not _WORD.match(prop):
                err(f"property name {prop!r} in fields must match ^\\w+$")
            if prop in spec.properties:
                err(f"property {prop!r} is set by both properties and fields")
            if not _FIELD.match(request_field):
                err(f"fields.{prop}: {request_field!r} is not a request field name")

        also: list[tuple[Template, Template, int]] = []
        for n, extra in enumerate(spec.also):
            g = template(extra.group, f"also[{n}].group")
            e = template(extra.event, f"also[{n}].event")
            if extra.delay_ms < 0:
                err(f"also[{n}].delay_ms must be >= 0, got {extra.delay_ms}")
            if g is not None:
                self._check_group(g, f"also[{n}].group", err)
            if g is not None and e is not None:
                self._check_event_type(g, e, f"also[{n}]", err)
                also.append((g, e, extra.delay_ms))

        if spec.vwo is not None and not _VWO_NAME.match(spec.vwo):
            err(f"bad vwo name {spec.vwo!r}: expected ^[A-Za-z][\\w.-]{{0,254}}$")
        for name in spec.vwo_fields:
            if not _FIELD.match(name):
                err(f"bad vwo_fields entry {name!r}: not a request field name")
        if spec.vwo_fields and spec.vwo is None:
            err("vwo_fields given without vwo")

        if len(self.report.problems) > before and any(
            p.severity == "error" for p in self.report.problems[before:]
        ):
            return None
        assert group is not None and event is not None
        return CompiledRule(
            rule=description,
            file=src.file,
            line=line,
            group=group,
            event=event,
            properties=tuple(properties),
            fields=tuple(spec.fields.items()),
            also=tuple(also),
            minimal=spec.minimal,
            vwo=spec.vwo,
            vwo_fields=tuple(spec.vwo_fields),
            pattern=pattern,
            index=index,
        )

    def _template(
        self,
        src: Source,
        label: str,
        line: int | None,
        text: str,
        what: str,
        captures: int,
    ) -> Template | None:
        def err(message: str, severity: Literal["error", "warning"] = "error") -> None:
            self.report.add(src, label, f"{what}: {message}", line, severity)

        try:
            parsed = parse_template(text)
        except TemplateError as exc:
            err(str(exc))
            return None
        bound: list[tuple[Filter, ...]] = []
        ok = True
        for ph in parsed.placeholders:
            if ph.index > captures:
                have = (
                    "exact rules have no captures"
                    if captures == 0 and label.startswith("exact")
                    else f"the pattern has {captures} capture group(s)"
                )
                err(f"{ph.text} refers to capture {ph.index}, but {have}")
                ok = False
            chain: list[Filter] = []
            for name in ph.filter_names:
                flt = SNAKE if name == "snake" else self.filters.get(name)
                if flt is None:
                    err(f"{ph.text}: unknown filter or lookup table {name!r}")
                    ok = False
                    continue
                chain.append(flt)
            for a, b in zip(chain, chain[1:], strict=False):
                if a.lookup is not None and b.lookup is not None:
                    missing = sorted({v for v in a.lookup.values() if v not in b.lookup})
                    if missing:
                        err(
                            f"{ph.text}: values of lookup {a.name!r} missing from "
                            f"{b.name!r} never resolve: {', '.join(map(repr, missing))}",
                            "warning",
                        )
            bound.append(tuple(chain))
        return parsed.bind(tuple(bound)) if ok else None

    def _check_group(self, group: Template, what: str, err: Any) -> None:
        if group.is_static:
            if group.source not in self.groups:
                err(f"{what}: unknown group key {group.source!r}")
            return
        # `{N|...|table}` as the whole group: every value the table can give must be a key.
        if len(group.parts) == 1 and group.filters[0] and group.filters[0][-1].lookup:
            last = group.filters[0][-1]
            assert last.lookup is not None
            bad = sorted({v for v in last.lookup.values() if v not in self.groups})
            if bad:
                err(
                    f"{what}: lookup {last.name!r} gives values that are not group keys: "
                    + ", ".join(map(repr, bad))
                )

    def _check_event_type(self, group: Template, event: Template, what: str, err: Any) -> None:
        if group.is_static and event.is_static:
            name = self.groups.get(group.source)
            if name is not None and not EVENT_TYPE.match(f"{name} - {event.source}"):
                err(f"{what} {name + ' - ' + event.source!r} can never match ^\\w+ - \\w+$")
            return
        literal = event.literal_text
        if literal and not _WORD.match(literal):
            err(f"{what}: literal text {literal!r} in event can never match ^\\w+ - \\w+$")


# --- rules that never fire ---------------------------------------------------------------


def _shadow_warnings(
    fuzzy: list[CompiledRule],
    exact_keys: set[str],
    sources: list[Source],
    report: _Report,
) -> None:
    by_file = {src.file: src for src in sources}
    first_seen: dict[tuple[str, int], CompiledRule] = {}
    for position, rule in enumerate(fuzzy):
        assert rule.pattern is not None
        src = by_file.get(rule.file) or Source(rule.file, None, None)
        label = rule.rule.split(": ", 1)[-1]

        def warn(message: str, src: Source = src, label: str = label, rule: Any = rule) -> None:
            report.add(src, label, message, rule.line, "warning")

        key = (rule.pattern.pattern, rule.pattern.flags)
        if key in first_seen:
            warn(f"never fires: same pattern as earlier {_name(first_seen[key])}")
            continue
        first_seen[key] = rule
        language = enumerate_language(rule.pattern, _ENUMERATION_LIMIT)
        definite = language is not None
        if language is not None:
            if not language:
                warn("never fires: the pattern matches no valid event name")
                continue
            samples = sorted(language - exact_keys)
            if not samples:
                warn(f"never fires: every name it matches ({len(language)}) is an exact key")
                continue
        else:
            generated = sample_strings(rule.pattern)
            samples = [s for s in generated if s not in exact_keys]
            if generated and not samples:
                warn(f"probably never fires: every sample ({len(generated)}) is an exact key")
                continue
            if not samples:
                continue
        earlier = fuzzy[:position]
        covering: dict[int, CompiledRule] = {}
        for sample in samples:
            winner = next(
                (r for r in earlier if r.pattern is not None and r.pattern.search(sample)), None
            )
            if winner is None:
                break
            covering[winner.index] = winner
        else:
            names = ", ".join(_name(r) for r in covering.values())
            plural = "rule" if len(covering) == 1 else "rules"
            if definite:
                warn(f"never fires: every name it matches also matches earlier {plural} {names}")
            else:
                warn(
                    f"probably never fires: every sample ({len(samples)}) also matches "
                    f"earlier {plural} {names}"
                )


def _name(rule: CompiledRule) -> str:
    return rule.rule.split(": ", 1)[-1]
