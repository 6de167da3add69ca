"""Reading config sections: environment overrides and a key-by-key check of TOML data.

Generic over `Section` Structs, so `Settings` (in `router.config`) only declares the keys;
every bad key is reported, not just the first, with the file named by the caller.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
from msgspec import Struct

from ..errors import Problem

ENV_PREFIX = "METRICS_ROUTER_"


class Section(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base for config sections: unknown keys are errors; values never change once read."""


def section_type(tp: Any) -> type[Section] | None:
    """The Section class behind a field type (unwrapping `X | None`)."""
    if isinstance(tp, type) and issubclass(tp, Section):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        for arg in typing.get_args(tp):
            found = section_type(arg)
            if found is not None:
                return found
    return None


def key_types(cls: type[Section]) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def env_keys(
    cls: type[Section], path: tuple[str, ...] = ()
) -> Iterator[tuple[str, tuple[str, ...], Any]]:
    """Yield (ENV_NAME, key path, type) for every scalar key below cls."""
    for name, tp in key_types(cls).items():
        sub = section_type(tp)
        if sub is not None:
            yield from env_keys(sub, (*path, name))
        else:
            env = ENV_PREFIX + "_".join((*path, name)).upper()
            yield env, (*path, name), tp


def env_value(raw: str, tp: Any) -> Any:
    origin = typing.get_origin(tp) or tp
    if origin in (list, dict):
        text = raw.strip()
        if text.startswith(("[", "{")):
            return msgspec.json.decode(text)
        if origin is list:
            return [item.strip() for item in text.split(",") if item.strip()]
    return raw


def _env_problem(env: str, message: str) -> Problem:
    return Problem(file="environment", where=env, message=message)


def overlay_env(
    root: type[Section],
    data: dict[str, Any],
    environ: Mapping[str, str],
    problems: list[Problem],
) -> None:
    """Set each METRICS_ROUTER_* variable of `environ` into `data`; unknown ones are problems."""
    known = {env: (path, tp) for env, path, tp in env_keys(root)}
    for env, raw in environ.items():
        if not env.startswith(ENV_PREFIX):
            continue
        if env not in known:
            problems.append(_env_problem(env, f"{env} is not a known setting"))
            continue
        path, tp = known[env]
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(_env_problem(env, f"overrides a non-table [{part}]"))
                break
            node = child
        else:
            try:
                node[path[-1]] = env_value(raw, tp)
            except msgspec.DecodeError as exc:
                problems.append(_env_problem(env, str(exc)))


def check_keys(
    cls: type[Section], data: Any, where: str, problems: list[tuple[str, str]]
) -> dict[str, Any]:
    """Convert each key on its own so that every bad key is reported, not just the first.

    Problems are (key path, message) pairs; the caller knows the file.
    """
    if not isinstance(data, dict):
        problems.append((where, f"expected a table, got {type(data).__name__}"))
        return {}
    fields = key_types(cls)
    good: dict[str, Any] = {}
    for key, value in data.items():
        label = f"{where}.{key}" if where else key
        if key not in fields:
            problems.append((label, "unknown key"))
            continue
        sub = section_type(fields[key])
        if sub is not None:
            checked = check_keys(sub, value, label, problems)
            good[key] = checked
            continue
        try:
            msgspec.convert(value, fields[key], strict=False)
        except msgspec.ValidationError as exc:
            problems.append((label, str(exc)))
            continue
        good[key] = value
    return good
