"""One check of everything a router needs before it serves, reported all at once.

Used by `serve`, `forward`, `rules check` and the SIGHUP reload: the rule files and the
event registry (one read), the VWO settings file, and the spool and dead-letter paths.
Config keys themselves are checked when the settings are read (`config.load_settings`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from .config import Settings, deadletter_path, enabled_sinks
from .errors import Problem, StartupError
from .ruletable import default_rules_path
from .ruletable.ruleset import RuleSet, read_ruleset

log = logging.getLogger(__name__)

# Sinks whose undelivered work waits in `[spool] path`.
_SPOOLED = ("amplitude", "vwo", "jetstream")


@dataclass(frozen=True, slots=True)
class Checked:
    problems: list[Problem]
    # None when the rule files were not part of the check, or have errors.
    ruleset: RuleSet | None
    # The rule table itself does not compile (registry problems aside).
    rules_broken: bool = False

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def rule_paths(settings: Settings) -> list[Path]:
    return [Path(p) for p in settings.rules.paths] or [default_rules_path()]


def check(
    settings: Settings,
    paths: Sequence[str | Path] | None = None,
    *,
    rules: bool = True,
    files: bool = True,
    config: str = "config",
) -> Checked:
    """Every problem of the rule set (`rules`) and of the files the settings name (`files`).

    `paths` replaces `[rules] paths`; `config` names the config file in problems.
    """
    problems: list[Problem] = []
    ruleset = None
    broken = False
    if rules:
        ruleset, found, broken = read_ruleset(
            rule_paths(settings) if paths is None else paths, settings.rules.cache_size
        )
        problems += found
    if files:
        problems += vwo_settings_problems(settings)
        problems += path_problems(settings, config)
    return Checked(problems, ruleset, broken)


def prepare(settings: Settings, *, rules: bool = True, config: str = "config") -> Checked:
    """`check`, raising StartupError listing every problem if any is an error.

    Warnings are logged: the router starts with them.
    """
    checked = check(settings, rules=rules, config=config)
    if checked.errors:
        raise StartupError(checked.problems, 1 if checked.rules_broken else None)
    for problem in checked.problems:
        log.warning("%s", problem)
    return checked


def vwo_settings_problems(settings: Settings) -> list[Problem]:
    """The VWO settings file must be readable and list metrics (the sink reads it at start)."""
    from .sinks.vwo import metric_identifiers

    conf = settings.sinks.vwo
    if conf is None or not conf.enabled:
        return []
    where = "[sinks.vwo] settings_path"
    try:
        identifiers = metric_identifiers(Path(conf.settings_path).read_bytes())
    except OSError as exc:
        message = f"cannot read: {exc.strerror}"
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        message = f"not a VWO settings file: {exc}"
    else:
        if identifiers:
            return []
        return [
            Problem(
                file=conf.settings_path,
                severity="warning",
                where=where,
                message="no metric identifiers: every conversion is counted as event not found",
            )
        ]
    return [Problem(file=conf.settings_path, where=where, message=message)]


def path_problems(settings: Settings, config: str = "config") -> list[Problem]:
    """The spool directory and the dead-letter database must be where we can write."""
    problems: list[Problem] = []
    names = {name for name, _ in enabled_sinks(settings)}
    if names.intersection(_SPOOLED):
        why = _not_writable_dir(Path(settings.spool.path))
        if why:
            problems.append(Problem(file=config, where="spool.path", message=why))
    target = deadletter_path(settings)
    if target.is_dir():
        why = f"{target} is a directory, not a database file"
    else:
        why = _not_writable_dir(target.parent)
    if why:
        problems.append(Problem(file=config, where="deadletter.path", message=why))
    return problems


def _not_writable_dir(path: Path) -> str | None:
    """Why `path` cannot be (created as) a directory we write in, or None."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{path}: {probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{path}: {probe} is not writable"
    return None
