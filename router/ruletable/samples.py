"""Deterministic example strings for a regex, used to warn about fuzzy rules that never fire."""

from __future__ import annotations

import importlib
import itertools
import re
import string
from collections.abc import Iterable
from typing import Any

__all__ = ["NAME_ALPHABET", "enumerate_language", "sample_strings"]

# The regex parser lives in re._parser since 3.11 (importing sre_parse warns), and typeshed
# has no stubs for it, hence the dynamic import.
sre_p: Any = importlib.import_module("re._parser")
sre_c: Any = importlib.import_module("re._constants")

# Event names reaching the table match `^[\w\s.:-]+$` (ASCII), so these are the only
# characters worth generating. The order decides which representatives are tried first.
NAME_ALPHABET = (
    string.ascii_lowercase + string.ascii_uppercase + string.digits + "_-.: \t\n\r\x0b\x0c"
)
_VALID_NAME = re.compile(r"^[\w\s.:-]{1,1024}\Z", re.ASCII)

# One representative from each kind of character, so a class like `[\w-]` yields
# samples that tell it apart from a narrower earlier class like `[a-z]`.
_PREFERRED = "aZ0_-.: "

_MAX_SAMPLES = 64
_MAX_OPTIONS = 12


class _GiveUp(Exception):
    """The pattern uses a construct the generator does not model (backreferences, ...)."""


def sample_strings(pattern: re.Pattern[str]) -> list[str]:
    """Up to 64 distinct names that `pattern` matches, in a deterministic order."""
    try:
        tree = sre_p.parse(pattern.pattern, pattern.flags)
        candidates = _seq_samples(list(tree))
    except (_GiveUp, re.error, RecursionError):
        return []
    out: list[str] = []
    seen: set[str] = set()
    for s in candidates:
        if s in seen or s.endswith("\n") or not _VALID_NAME.match(s):
            continue
        seen.add(s)
        if pattern.search(s):
            out.append(s)
    return out[:_MAX_SAMPLES]


def enumerate_language(pattern: re.Pattern[str], limit: int = 4096) -> set[str] | None:
    """Every name the pattern matches, if that set is finite and small; else None."""
    try:
        tree = list(sre_p.parse(pattern.pattern, pattern.flags))
    except re.error:
        return None
    if not tree or not _is_at(tree[0], _BEGIN) or not _is_at(tree[-1], _END):
        return None  # unanchored: any longer name containing a match matches too
    try:
        strings = _seq_all(tree, limit)
    except _GiveUp:
        return None
    if strings is None:
        return None
    return {
        s for s in strings if not s.endswith("\n") and _VALID_NAME.match(s) and pattern.search(s)
    }


_BEGIN = {sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING}
_END = {sre_c.AT_END, sre_c.AT_END_STRING}
_REPEATS = {sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT}


def _is_at(node: tuple[Any, Any], kinds: set[Any]) -> bool:
    op, av = node
    return bool(op is sre_c.AT and av in kinds)


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- char classes ----------------------------------------------------------------------


def _in_category(ch: str, cat: Any) -> bool:
    word = ch.isascii() and (ch.isalnum() or ch == "_")
    digit = ch in string.digits
    space = ch in " \t\n\r\x0b\x0c"
    table = {
        sre_c.CATEGORY_WORD: word,
        sre_c.CATEGORY_NOT_WORD: not word,
        sre_c.CATEGORY_DIGIT: digit,
        sre_c.CATEGORY_NOT_DIGIT: not digit,
        sre_c.CATEGORY_SPACE: space,
        sre_c.CATEGORY_NOT_SPACE: not space,
    }
    if cat not in table:
        raise _GiveUp
    return table[cat]


def _class_members(items: list[tuple[Any, Any]], ignore_case: bool) -> list[str]:
    negate = False
    members: list[str] = []
    for ch in NAME_ALPHABET:
        hit = False
        for op, av in items:
            if op is sre_c.NEGATE:
                negate = True
            elif op is sre_c.LITERAL:
                hit = hit or chr(av) == ch or (ignore_case and chr(av).lower() == ch.lower())
            elif op is sre_c.RANGE:
                lo, hi = av
                hit = hit or lo <= ord(ch) <= hi
                if ignore_case:
                    hit = hit or lo <= ord(ch.lower()) <= hi or lo <= ord(ch.upper()) <= hi
            elif op is sre_c.CATEGORY:
                hit = hit or _in_category(ch, av)
            else:
                raise _GiveUp
        if hit != negate:
            members.append(ch)
    return members


def _representatives(members: list[str]) -> list[str]:
    picks = [c for c in _PREFERRED if c in members]
    picks += [c for c in members if c not in picks][: max(0, 3 - len(picks))]
    return picks


# --- samples (a few per node) ----------------------------------------------------------


def _node_samples(op: Any, av: Any, flags: int = 0) -> list[str]:
    if op is sre_c.LITERAL:
        return [chr(av)]
    if op is sre_c.NOT_LITERAL:
        return _representatives([c for c in NAME_ALPHABET if c != chr(av)])
    if op is sre_c.ANY:
        return _representatives([c for c in NAME_ALPHABET if c != "\n"])
    if op is sre_c.IN:
        return _representatives(_class_members(av, bool(flags & re.IGNORECASE)))
    if op is sre_c.AT:
        return [""]
    if op is sre_c.SUBPATTERN:
        _group, add_flags, _del, sub = av
        return _seq_samples(list(sub), flags | add_flags)
    if op is sre_c.BRANCH:
        _, alternatives = av
        return _dedupe(s for alt in alternatives for s in _seq_samples(list(alt), flags))
    if op in _REPEATS:
        lo, hi, sub = av
        options = _seq_samples(list(sub), flags) or [""]
        counts = [n for n in (lo, lo + 1, lo + 2) if hi is sre_c.MAXREPEAT or n <= hi]
        out: list[str] = []
        for n in counts:
            for shift in range(len(options)):
                out.append("".join(options[(shift + i) % len(options)] for i in range(n)))
        return _dedupe(out)[:_MAX_OPTIONS]
    if op is sre_c.ATOMIC_GROUP:
        return _seq_samples(list(av), flags)
    # Lookarounds, backreferences and conditionals: sampling them blindly would produce
    # strings the pattern rejects; the final `pattern.search` filter would drop them anyway.
    raise _GiveUp


def _seq_samples(seq: list[tuple[Any, Any]], flags: int = 0) -> list[str]:
    per_node = [_node_samples(op, av, flags)[:_MAX_OPTIONS] or [""] for op, av in seq]
    if not per_node:
        return [""]
    widest = max(len(opts) for opts in per_node)
    out: list[str] = []
    # A diagonal walk varies every node at once; single-node variations keep the rest fixed.
    for k in range(widest):
        out.append("".join(opts[k % len(opts)] for opts in per_node))
    base = [opts[0] for opts in per_node]
    for i, opts in enumerate(per_node):
        for choice in opts[1:]:
            out.append("".join(base[:i] + [choice] + base[i + 1 :]))
    return _dedupe(out)[: _MAX_SAMPLES * 2]


# --- full enumeration (finite languages only) ------------------------------------------


def _node_all(op: Any, av: Any, limit: int, flags: int) -> list[str] | None:
    if op is sre_c.LITERAL:
        return [chr(av)]
    if op is sre_c.NOT_LITERAL:
        return [c for c in NAME_ALPHABET if c != chr(av)]
    if op is sre_c.ANY:
        return [c for c in NAME_ALPHABET if c != "\n"]
    if op is sre_c.IN:
        return _class_members(av, bool(flags & re.IGNORECASE))
    if op is sre_c.AT:
        return [""]
    if op is sre_c.SUBPATTERN:
        _group, add_flags, _del, sub = av
        return _seq_all(list(sub), limit, flags | add_flags)
    if op is sre_c.BRANCH:
        out: list[str] = []
        for alt in av[1]:
            got = _seq_all(list(alt), limit, flags)
            if got is None:
                return None
            out.extend(got)
            if len(out) > limit:
                return None
        return _dedupe(out)
    if op in _REPEATS:
        lo, hi, sub = av
        if hi is sre_c.MAXREPEAT or hi - lo > 64:
            return None
        inner = _seq_all(list(sub), limit, flags)
        if inner is None:
            return None
        result: list[str] = []
        for n in range(lo, hi + 1):
            for combo in itertools.product(inner, repeat=n):
                result.append("".join(combo))
                if len(result) > limit:
                    return None
        return _dedupe(result)
    raise _GiveUp


def _seq_all(seq: list[tuple[Any, Any]], limit: int, flags: int = 0) -> list[str] | None:
    acc = [""]
    for op, av in seq:
        options = _node_all(op, av, limit, flags)
        if options is None:
            return None
        if len(acc) * len(options) > limit:
            return None
        acc = [a + b for a in acc for b in options]
    return _dedupe(acc)
