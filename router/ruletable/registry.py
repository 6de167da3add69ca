"""The server-side event registry: which event types back-end services may send, with what.

Registered in the rule files' reserved `[events."<type>"]` tables (bundled:
`rules/registry.toml`), in the spirit of Sentry's `analytics.Event`: each attribute has a
name, a type and whether it is required. A `*` in a type stands for one `\\w+` segment
(`email.*.sent`); exact types win over patterns, patterns are tried in file order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from ..errors import BadRequest, Problem, RegistryError
from ..events import ServerEvent
from .sources import Source, read_sources

AttrType = Literal["str", "int", "float", "bool"]
_CHECKS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}
_EVENT_TYPE = re.compile(r"^[\w:-]+(?:\.(?:[\w:-]+|\*))*$")


class _AttrSchema(msgspec.Struct, forbid_unknown_fields=True):
    type: AttrType = "str"
    required: bool = True


class _EventSchema(msgspec.Struct, forbid_unknown_fields=True):
    attributes: dict[str, AttrType | _AttrSchema] = msgspec.field(default_factory=dict)
    activity: bool = False
    flow: bool = False
    flow_complete: bool = False
    flow_type: str | None = None


class Attribute(msgspec.Struct, frozen=True):
    name: str
    type: AttrType
    required: bool


class EventSpec(msgspec.Struct, frozen=True):
    """One registered event type."""

    name: str
    attributes: dict[str, Attribute]
    # Activity events must carry a uid.
    activity: bool = False
    # Flow events need a metrics context (inline or stashed) to be logged as flow events.
    flow: bool = False
    # Ends a flow: `flow.complete` + `<group> - complete`, and the stash is cleared.
    flow_complete: bool = False
    # The flow a complete signal ends when the context names none (its `flowType`).
    flow_type: str | None = None
    file: str = ""
    line: int | None = None


class Registry:
    """Registered event types: an exact dict, then `*` patterns in declared order."""

    def __init__(self, specs: Iterable[EventSpec] = ()) -> None:
        self.exact: dict[str, EventSpec] = {}
        self.patterns: list[tuple[re.Pattern[str], EventSpec]] = []
        for spec in specs:
            if "*" in spec.name:
                parts = (r"\w+" if p == "*" else re.escape(p) for p in spec.name.split("."))
                self.patterns.append((re.compile(r"\.".join(parts)), spec))
            else:
                self.exact[spec.name] = spec

    def __len__(self) -> int:
        return len(self.exact) + len(self.patterns)

    def lookup(self, name: str) -> EventSpec | None:
        spec = self.exact.get(name)
        if spec is not None:
            return spec
        for pattern, candidate in self.patterns:
            if pattern.fullmatch(name):
                return candidate
        return None

    def validate(self, event: ServerEvent, index: int) -> EventSpec:
        """The event's spec; a 400 naming the event and the attribute when it does not fit."""
        at = f"$.events[{index}]"
        spec = self.lookup(event.event)
        if spec is None:
            raise BadRequest(
                f"{event.event}: unregistered event type", f"{at}.event", "unregistered_event"
            )
        if spec.activity and event.uid is None:
            raise BadRequest(
                f"{event.event}: an activity event needs a uid", f"{at}.uid", "missing_uid"
            )
        attrs = event.attributes
        for name, value in attrs.items():
            attr = spec.attributes.get(name)
            if attr is None:
                raise BadRequest(
                    f"{event.event}: unknown attribute {name!r}",
                    f"{at}.attributes.{name}",
                    "unknown_attribute",
                )
            if value is not None and (
                isinstance(value, bool) != (attr.type == "bool")
                or not isinstance(value, _CHECKS[attr.type])
            ):
                raise BadRequest(
                    f"{event.event}: attribute {name!r} must be of type {attr.type}",
                    f"{at}.attributes.{name}",
                    "bad_attribute_type",
                )
        for name, attr in spec.attributes.items():
            if attr.required and attrs.get(name) is None:
                raise BadRequest(
                    f"{event.event}: missing required attribute {name!r}",
                    f"{at}.attributes.{name}",
                    "missing_attribute",
                )
        return spec


def _line_of(text: str, name: str) -> int | None:
    quoted = re.escape(name)
    header = re.compile(rf"""^\s*\[\s*events\s*\.\s*(?:"{quoted}"|'{quoted}'|{quoted})\s*\]""")
    for number, line in enumerate(text.splitlines(), 1):
        if header.match(line):
            return number
    return None


def compile_registry(sources: Sequence[Source]) -> tuple[Registry, list[Problem]]:
    """The registry of already-read rule files, and every problem of its `[events.*]` tables."""
    specs: list[EventSpec] = []
    problems: list[Problem] = []
    seen: dict[str, EventSpec] = {}
    for src in sources:
        label = src.file
        text = src.text or ""
        events: Any = (src.raw or {}).get("events", {})
        if not isinstance(events, dict):
            problems.append(
                Problem(file=label, where="events", message="must be a table of event types")
            )
            continue
        for name, raw in events.items():
            line = _line_of(text, name)
            where = f'events."{name}"'

            def problem(
                message: str, label: str = label, where: str = where, line: int | None = line
            ) -> None:
                problems.append(Problem(file=label, line=line, where=where, message=message))

            if not _EVENT_TYPE.match(name):
                problem("not a valid event type (dotted \\w segments, `*` for one segment)")
                continue
            try:
                entry = msgspec.convert(raw, _EventSchema)
            except msgspec.ValidationError as exc:
                problem(str(exc))
                continue
            if entry.flow_type is not None and not entry.flow_complete:
                problem("flow_type is only meaningful with flow_complete = true")
            spec = EventSpec(
                name=name,
                attributes={
                    attr: Attribute(attr, a, True)
                    if isinstance(a, str)
                    else Attribute(attr, a.type, a.required)
                    for attr, a in entry.attributes.items()
                },
                activity=entry.activity,
                flow=entry.flow or entry.flow_complete,
                flow_complete=entry.flow_complete,
                flow_type=entry.flow_type,
                file=label,
                line=line,
            )
            first = seen.get(name)
            if first is not None:
                at = f"{first.file}:{first.line}" if first.line else first.file
                problem(f"registered twice (first at {at})")
                continue
            seen[name] = spec
            specs.append(spec)
    return Registry(specs), problems


def check_registry(paths: Sequence[str | Path]) -> list[Problem]:
    """Every problem of the registry in the rule files (unreadable files included)."""
    sources, problems = read_sources(paths)
    return problems + compile_registry(sources)[1]


def load_registry(paths: Sequence[str | Path]) -> Registry:
    """The registry of the rule files; RegistryError lists every problem."""
    sources, problems = read_sources(paths)
    registry, more = compile_registry(sources)
    found = problems + more
    if any(p.severity == "error" for p in found):
        raise RegistryError(found)
    return registry
