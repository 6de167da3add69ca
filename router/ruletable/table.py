"""The compiled rule table: exact dict, then fuzzy regexes in order, behind a bounded cache."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from ..errors import Problem
from .template import Template

__all__ = ["DEFAULT_CACHE_SIZE", "CompiledRule", "Mapping", "Output", "RuleTable"]

DEFAULT_CACHE_SIZE = 65_536

# Amplitude's event_type shape; `re.ASCII` because FxA's JavaScript `\w` is ASCII-only.
EVENT_TYPE = re.compile(r"^\w+ - \w+\Z", re.ASCII)


class Output(msgspec.Struct, frozen=True):
    """One extra output (from `also`)."""

    event_type: str
    delay_ms: int


class Mapping(msgspec.Struct, frozen=True):
    """What one event name maps to; shared between calls, so treat it as read-only."""

    event_type: str
    group: str
    event: str
    category: str | None
    target: str | None
    properties: dict[str, str]
    fields: tuple[tuple[str, str], ...]
    also: tuple[Output, ...]
    minimal: bool
    vwo: str | None
    vwo_fields: tuple[str, ...]
    rule: str


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule with parsed, filter-bound templates; exact rules have no pattern."""

    rule: str  # "rules/x.toml: exact 'flow.x'" / "rules/x.toml: fuzzy 'name' (#3)"
    file: str
    line: int | None
    group: Template
    event: Template
    properties: tuple[tuple[str, Template], ...]
    fields: tuple[tuple[str, str], ...]
    also: tuple[tuple[Template, Template, int], ...]
    minimal: bool
    vwo: str | None
    vwo_fields: tuple[str, ...]
    pattern: re.Pattern[str] | None = None
    index: int = 0  # 1-based position among all fuzzy rules

    def build(
        self, captures: Sequence[str | None], groups: AbcMapping[str, str]
    ) -> tuple[Mapping | None, str]:
        """Resolve templates against captures: (Mapping, "") or (None, why it was dropped)."""
        key, why = self.group.resolve(captures)
        if key is None:
            return None, f"group {self.group.source!r} did not resolve: {why}"
        group = groups.get(key)
        if group is None:
            return None, f"group {self.group.source!r} gave {key!r}, which is not a [groups] key"
        event, why = self.event.resolve(captures)
        if event is None:
            return None, f"event {self.event.source!r} did not resolve: {why}"
        event_type = f"{group} - {event}"
        if not EVENT_TYPE.match(event_type):
            return None, f"event_type {event_type!r} does not match '^\\w+ - \\w+$'"
        properties: dict[str, str] = {}
        for name, template in self.properties:
            value, _ = template.resolve(captures)
            if value is not None:  # an unresolved property is left out, not fatal
                properties[name] = value
        also: list[Output] = []
        for group_t, event_t, delay in self.also:
            extra = _event_type(group_t, event_t, captures, groups)
            if extra is not None:
                also.append(Output(extra, delay))
        mapping = Mapping(
            event_type=event_type,
            group=group,
            event=event,
            category=captures[0] if captures else None,
            target=captures[1] if len(captures) > 1 else None,
            properties=properties,
            fields=self.fields,
            also=tuple(also),
            minimal=self.minimal,
            vwo=self.vwo,
            vwo_fields=self.vwo_fields,
            rule=self.rule,
        )
        return mapping, ""


def _event_type(
    group_t: Template,
    event_t: Template,
    captures: Sequence[str | None],
    groups: AbcMapping[str, str],
) -> str | None:
    key, _ = group_t.resolve(captures)
    event, _ = event_t.resolve(captures)
    if key is None or event is None or key not in groups:
        return None
    event_type = f"{groups[key]} - {event}"
    return event_type if EVENT_TYPE.match(event_type) else None


class RuleTable:
    """Maps event names to Mappings: exact dict first, then fuzzy regexes, first match wins."""

    exact_count: int
    fuzzy_count: int
    warnings: list[Problem]

    def __init__(
        self,
        groups: dict[str, str],
        exact: dict[str, Mapping],
        fuzzy: list[CompiledRule],
        warnings: list[Problem],
        *,
        exact_rules: dict[str, CompiledRule] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._groups = dict(groups)
        self._group_view = types.MappingProxyType(self._groups)
        self._exact = exact
        self._exact_rules = exact_rules or {}
        self._fuzzy = tuple(fuzzy)
        self.exact_count = len(exact)
        self.fuzzy_count = len(fuzzy)
        self.warnings = warnings
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.cache_size = cache_size
        # One dict serves exact names and cached fuzzy results (negative ones too), so a
        # repeated name costs a single lookup and never rescans the regexes. When
        # `cache_size` fuzzy results have accumulated, they are all dropped at once: memory
        # stays flat under floods of distinct (hostile) names, and eviction stays O(1).
        self._memo: dict[str, Mapping | None] = dict(exact)
        self._cached = 0

    @property
    def groups(self) -> AbcMapping[str, str]:
        """Group key -> Amplitude group name."""
        return self._group_view

    group_names = groups

    def match(self, name: str) -> Mapping | None:
        """The Mapping for `name`, or None when no rule gives one (the event is dropped)."""
        try:
            return self._memo[name]  # exceptions are free on the hit path since 3.11
        except KeyError:
            return self._miss(name)

    @property
    def cache_len(self) -> int:
        """How many fuzzy results (including negative ones) are cached now."""
        return self._cached

    def cache_clear(self) -> None:
        """Forget every cached fuzzy result (exact names stay)."""
        self._memo = dict(self._exact)
        self._cached = 0

    def _miss(self, name: str) -> Mapping | None:
        result = self._scan(name)
        if self._cached >= self.cache_size:
            self.cache_clear()
        self._memo[name] = result
        self._cached += 1
        return result

    def _scan(self, name: str) -> Mapping | None:
        if name.endswith("\n"):
            # Python's `$` also matches before a final newline; FxA's JavaScript `$` does not.
            return None
        groups = self._groups
        for rule in self._fuzzy:
            assert rule.pattern is not None
            m = rule.pattern.search(name)
            if m is not None:
                # FxA stops at the first matching regex even when it yields no group.
                return rule.build(m.groups(), groups)[0]
        return None

    def explain(self, name: str) -> str:
        """Human text: which rule matched (or none, and why), and what it emits."""
        lines = [f"event {name!r}:"]
        rule = self._exact_rules.get(name)
        if rule is not None:
            lines.append(f"  matched {rule.rule}{_at(rule.line)}")
            mapping, why = rule.build((), self._groups)
            lines += _describe(mapping, why)
            return "\n".join(lines)
        if name in self._exact:
            lines.append("  matched an exact rule")
            lines += _describe(self._exact[name], "")
            return "\n".join(lines)
        lines.append(f"  no exact rule ({self.exact_count} exact names)")
        if name.endswith("\n"):
            lines.append("  names ending in a newline never match a fuzzy rule")
            lines.append("  -> dropped")
            return "\n".join(lines)
        for fuzzy in self._fuzzy:
            assert fuzzy.pattern is not None
            m = fuzzy.pattern.search(name)
            if m is None:
                continue
            lines.append(f"  matched {fuzzy.rule}{_at(fuzzy.line)}: /{fuzzy.pattern.pattern}/")
            if fuzzy.index > 1:
                lines.append(f"    ({fuzzy.index - 1} earlier fuzzy rule(s) did not match)")
            caps = ", ".join(f"{i}={c!r}" for i, c in enumerate(m.groups(), start=1))
            lines.append(f"    captures: {caps or '(none)'}")
            mapping, why = fuzzy.build(m.groups(), self._groups)
            lines += _describe(mapping, why)
            return "\n".join(lines)
        lines.append(f"  no fuzzy rule matches ({self.fuzzy_count} tried)")
        lines.append("  -> dropped")
        return "\n".join(lines)


def _at(line: int | None) -> str:
    return f" (line {line})" if line is not None else ""


def _describe(mapping: Mapping | None, why: str) -> list[str]:
    if mapping is None:
        return [f"  -> dropped: {why} (the first matching rule decides; later rules are not tried)"]
    out = [f"  -> {mapping.event_type}"]
    if mapping.category is not None or mapping.target is not None:
        out.append(f"     category={mapping.category!r} target={mapping.target!r}")
    if mapping.properties:
        props = ", ".join(f"{k}={v!r}" for k, v in mapping.properties.items())
        out.append(f"     event_properties: {props}")
    if mapping.fields:
        fields = ", ".join(f"{k}<-{v}" for k, v in mapping.fields)
        out.append(f"     event_properties from request fields: {fields}")
    for extra in mapping.also:
        out.append(f"     also: {extra.event_type} (+{extra.delay_ms} ms)")
    if mapping.minimal:
        out.append("     minimal: only uid, service and version are kept")
    if mapping.vwo is not None:
        fields = f" with {', '.join(mapping.vwo_fields)}" if mapping.vwo_fields else ""
        out.append(f"     VWO conversion: {mapping.vwo}{fields}")
    return out
