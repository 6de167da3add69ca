"""System programs a test needs: installed the way `make test` and `make bench` do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def program_or_skip(program: str) -> None:
    """Install `program` with scripts/install-system-deps.sh if missing; skip only if
    that truly fails (no root, no package index)."""
    if shutil.which(program) is None:
        subprocess.run(
            [str(ROOT / "scripts" / "install-system-deps.sh"), program],
            capture_output=True,
            timeout=300,
            check=False,
        )
    if shutil.which(program) is None:
        pytest.skip(
            f"{program} is not installed and scripts/install-system-deps.sh {program}"
            " could not install it"
        )
