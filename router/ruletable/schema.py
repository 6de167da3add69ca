"""msgspec Structs for the rule-file format (see rules/README.md), decoded from tomllib output."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "KNOWN_SECTIONS",
    "RESERVED_SECTIONS",
    "AlsoSpec",
    "ExactSpec",
    "FuzzySpec",
    "RuleFile",
    "decode_rule_file",
]

# Sections other work will add to rules/ (an event registry); compiled elsewhere, skipped here.
RESERVED_SECTIONS = frozenset({"events", "registry"})
KNOWN_SECTIONS = ("groups", "lookups", "exact", "fuzzy")


class AlsoSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An extra output emitted after the main one (FxA: account.reset → login complete)."""

    group: str
    event: str
    delay_ms: int = 0


class ExactSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One `[exact."name"]` rule; fuzzy rules add `match` and `name`."""

    group: str
    event: str
    properties: dict[str, str] = {}
    fields: dict[str, str] = {}
    also: list[AlsoSpec] = []
    minimal: bool = False
    vwo: str | None = None
    vwo_fields: list[str] = []


class FuzzySpec(ExactSpec, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One `[[fuzzy]]` rule: a regex tried in declared order."""

    match: str
    name: str | None = None


class RuleFile(msgspec.Struct, frozen=True, kw_only=True):
    """A whole rule file after decoding; sections that failed to decode are left out."""

    groups: dict[str, str] = {}
    lookups: dict[str, dict[str, str]] = {}
    exact: dict[str, ExactSpec] = {}
    fuzzy: list[FuzzySpec | None] = []  # None where an entry failed to decode (keeps indexes)


def decode_rule_file(raw: dict[str, Any]) -> tuple[RuleFile, list[tuple[str, str]]]:
    """Decode section by section so one bad rule does not hide the others.

    Returns the decoded file and a list of (rule, message) problems; each message carries
    the msgspec `$.path` rewritten to start at the file's root.
    """
    problems: list[tuple[str, str]] = []

    def convert(value: Any, typ: Any, path: str, rule: str) -> Any:
        try:
            return msgspec.convert(value, typ)
        except msgspec.ValidationError as exc:
            problems.append((rule, _rebase(str(exc), path)))
            return None

    for key in raw:
        if key not in KNOWN_SECTIONS and key not in RESERVED_SECTIONS:
            problems.append(
                (
                    key,
                    f"unknown top-level key {key!r} (expected one of "
                    f"{', '.join(KNOWN_SECTIONS)}; {', '.join(sorted(RESERVED_SECTIONS))} "
                    "are reserved)",
                )
            )

    def str_table(value: Any, path: str, rule: str) -> dict[str, str]:
        # Entry by entry, because msgspec reports a bad dict value as `[...]`, not its key.
        table = convert(value, dict[str, Any], path, rule) or {}
        out: dict[str, str] = {}
        for key, item in table.items():
            got = convert(item, str, f"{path}.{_quote(key)}", f"{rule}.{key}")
            if got is not None:
                out[key] = got
        return out

    groups = str_table(raw.get("groups", {}), "$.groups", "groups")
    lookups: dict[str, dict[str, str]] = {}
    raw_lookups = convert(raw.get("lookups", {}), dict[str, Any], "$.lookups", "lookups") or {}
    for name, table in raw_lookups.items():
        lookups[name] = str_table(table, f"$.lookups.{_quote(name)}", f"lookups.{name}")

    exact: dict[str, ExactSpec] = {}
    raw_exact = convert(raw.get("exact", {}), dict[str, Any], "$.exact", "exact") or {}
    for key, body in raw_exact.items():
        spec = convert(body, ExactSpec, f"$.exact.{_quote(key)}", f"exact {key!r}")
        if spec is not None:
            exact[key] = spec

    fuzzy: list[FuzzySpec | None] = []
    raw_fuzzy = convert(raw.get("fuzzy", []), list[Any], "$.fuzzy", "fuzzy") or []
    for i, body in enumerate(raw_fuzzy):
        label = body.get("name") if isinstance(body, dict) else None
        rule = f"fuzzy {label!r} (fuzzy[{i}])" if isinstance(label, str) else f"fuzzy[{i}]"
        fuzzy.append(convert(body, FuzzySpec, f"$.fuzzy[{i}]", rule))

    return RuleFile(groups=groups, lookups=lookups, exact=exact, fuzzy=fuzzy), problems


def _quote(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


def _rebase(message: str, path: str) -> str:
    # msgspec reports paths from the converted value (`$`, `$.group`); prefix ours.
    if "- at `$" in message:
        return message.replace("- at `$", f"- at `{path}", 1)
    return f"{message} - at `{path}`"
