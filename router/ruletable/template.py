"""Templates for groups, events and properties: literal text with `{N|filter|...}` placeholders."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import TemplateError

__all__ = ["Filter", "Placeholder", "Template", "TemplateError", "parse_template", "snake"]

# A placeholder is `{N}` or `{N|f1|f2}`; any other brace is an error, so a typo such as
# `{1|view_groups` is reported at start-up instead of being emitted literally.
_PLACEHOLDER = re.compile(r"\{(\d+)((?:\|[A-Za-z_][\w-]*)*)\}", re.ASCII)


def snake(value: str) -> str:
    """Replace every `-` with `_` (FxA's `replace(/-/g, '_')`)."""
    return value.replace("-", "_")


@dataclass(frozen=True, slots=True)
class Filter:
    """One named step applied to a captured value; `apply` returns None for a lookup miss."""

    name: str
    apply: Callable[[str], str | None]
    lookup: Mapping[str, str] | None = None  # set for lookup tables, for checks and explain()


@dataclass(frozen=True, slots=True)
class Placeholder:
    """`{index|filters...}` inside a template."""

    index: int
    filter_names: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal strings and placeholders, with filters bound at compile time."""

    source: str
    parts: tuple[str | Placeholder, ...]
    filters: tuple[tuple[Filter, ...], ...] = ()  # per placeholder, in order of appearance

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def is_static(self) -> bool:
        return not any(isinstance(p, Placeholder) for p in self.parts)

    @property
    def literal_text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))

    def bind(self, filters: tuple[tuple[Filter, ...], ...]) -> Template:
        """Return a copy with resolved filters, one tuple per placeholder."""
        return Template(self.source, self.parts, filters)

    def resolve(self, captures: Sequence[str | None]) -> tuple[str | None, str | None]:
        """Render against regex captures: (value, None) or (None, reason it did not resolve)."""
        out: list[str] = []
        k = 0
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = captures[part.index - 1] if part.index <= len(captures) else None
            if value is None:
                return None, f"capture {part.index} did not participate in the match"
            for flt in self.filters[k]:
                before = value
                result = flt.apply(value)
                if result is None:
                    return None, f"lookup '{flt.name}' has no key {before!r}"
                value = result
            out.append(value)
            k += 1
        return "".join(out), None


def parse_template(source: str) -> Template:
    """Split `source` into literals and placeholders; raise TemplateError on stray braces."""
    parts: list[str | Placeholder] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(source):
        literal = source[pos : m.start()]
        _check_literal(source, literal)
        if literal:
            parts.append(literal)
        index = int(m.group(1))
        if index < 1:
            raise TemplateError(f"placeholder {m.group(0)} in {source!r}: captures count from 1")
        names = tuple(n for n in m.group(2).split("|") if n)
        parts.append(Placeholder(index, names, m.group(0)))
        pos = m.end()
    rest = source[pos:]
    _check_literal(source, rest)
    if rest:
        parts.append(rest)
    return Template(source, tuple(parts))


def _check_literal(source: str, literal: str) -> None:
    if "{" in literal or "}" in literal:
        raise TemplateError(
            f"bad placeholder in {source!r}: expected {{N}} or {{N|filter|...}} "
            "(filters are 'snake' or a [lookups] table name)"
        )
