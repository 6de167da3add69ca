"""Rules that can never fire: fuzzy rules shadowed by exact keys or by earlier fuzzy rules."""

from __future__ import annotations

from typing import Any

from .binder import Report
from .samples import enumerate_language, sample_strings
from .sources import Source
from .table import CompiledRule

_ENUMERATION_LIMIT = 512


def shadow_warnings(
    fuzzy: list[CompiledRule],
    exact_keys: set[str],
    sources: list[Source],
    report: Report,
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
