"""The one reader of rule files: the rule table and the event registry are built from it.

Every file under the given paths is read and parsed once; what cannot be read or parsed
is a `Problem` with its file (and line, for TOML syntax errors).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem

__all__ = ["Source", "default_rules_path", "read_sources"]

_TOML_LINE = re.compile(r"at line (\d+)")


def default_rules_path() -> Path:
    """The repository's bundled `rules/` directory."""
    return Path(__file__).resolve().parents[2] / "rules"


@dataclass
class Source:
    file: str
    text: str | None
    raw: dict[str, Any] | None
    _lines: list[str] | None = field(default=None, repr=False)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = (self.text or "").splitlines()
        return self._lines

    def find(self, *needles: str) -> int | None:
        """1-based number of the first line containing any needle outside a comment."""
        for number, line in enumerate(self.lines, start=1):
            # Event names, keys and group names never contain '#', so cutting there is safe.
            code = line.split("#", 1)[0]
            if any(n in code for n in needles):
                return number
        return None

    def section_line(self, section: str) -> int | None:
        header = re.compile(rf"^\s*(\[{re.escape(section)}[\].]|{re.escape(section)}\s*=)")
        for number, line in enumerate(self.lines, start=1):
            if header.match(line):
                return number
        return None

    def key_line(self, section: str, key: str) -> int | None:
        start = self.section_line(section) or 0
        quoted = (f'"{key}"', f"'{key}'")
        for number, line in enumerate(self.lines[start:], start=start + 1):
            head = line.split("=", 1)[0].strip()
            if head == key or head in quoted:
                return number
        return self.find(*quoted) or start or None

    def exact_line(self, key: str) -> int | None:
        headers = (f'[exact."{key}"]', f"[exact.'{key}']", f"[exact.{key}]", f"[exact.{key}.")
        return self.find(*headers) or self.find(f'"{key}"', f"'{key}'")

    def fuzzy_line(self, index: int) -> int | None:
        seen = -1
        for number, line in enumerate(self.lines, start=1):
            if re.match(r"\s*\[\[\s*fuzzy\s*\]\]", line):
                seen += 1
                if seen == index:
                    return number
        return None


def _display(path: Path) -> str:
    resolved = path.resolve()
    for base in (default_rules_path().parent, Path.cwd()):
        try:
            return str(resolved.relative_to(base))
        except ValueError:
            continue
    return str(path)


def read_sources(paths: Sequence[str | Path]) -> tuple[list[Source], list[Problem]]:
    sources: list[Source] = []
    problems: list[Problem] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(path.glob("*.toml"), key=lambda p: p.name)
            if not files:
                message = "directory has no *.toml files"
                problems.append(
                    Problem(file=str(path), severity="warning", where="<path>", message=message)
                )
        elif path.is_file():
            files = [path]
        else:
            problems.append(
                Problem(file=str(path), where="<path>", message="no such file or directory")
            )
            continue
        for file in files:
            name = _display(file)
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(file=name, where="<file>", message=f"cannot read: {exc}"))
                continue
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                m = _TOML_LINE.search(str(exc))
                line = int(m.group(1)) if m else None
                problems.append(
                    Problem(
                        file=name, line=line, where="<toml>", message=f"TOML syntax error: {exc}"
                    )
                )
                continue
            sources.append(Source(name, text, raw))
    return sources, problems
