"""Binding one rule: parse its templates, bind filters and lookups, run the per-rule checks."""

from __future__ import annotations

import re
from typing import Any, Literal

from ..errors import Problem
from .schema import ExactSpec, FuzzySpec
from .sources import Source
from .table import EVENT_TYPE, CompiledRule
from .template import Filter, Template, TemplateError, parse_template, snake

SNAKE = Filter("snake", snake)
WORD = re.compile(r"^\w+\Z", re.ASCII)
_FIELD = re.compile(r"^[A-Za-z_][\w.]*\Z", re.ASCII)
# VWO matches a conversion by its metric `identifier`; keep names plain so a typo with a
# space or slash is caught here rather than as a silent "event not found" from VWO.
_VWO_NAME = re.compile(r"^[A-Za-z][\w.-]{0,254}\Z", re.ASCII)


class Report:
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


class Binder:
    """Parses a rule's templates, binds filters and runs the per-rule checks."""

    def __init__(self, groups: dict[str, str], filters: dict[str, Filter], report: Report) -> None:
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
            if not WORD.match(prop):
                err(f"property name {prop!r} must match ^\\w+$")
            t = template(text, f"properties.{prop}")
            if t is not None:
                properties.append((prop, t))
        for prop, request_field in spec.fields.items():
            if not WORD.match(prop):
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
        if literal and not WORD.match(literal):
            err(f"{what}: literal text {literal!r} in event can never match ^\\w+ - \\w+$")
