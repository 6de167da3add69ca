"""`python -m bench.instructions` must keep working: a short run of the real tool."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.programs import program_or_skip

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_counts_the_instructions_of_each_server() -> None:
    program_or_skip("valgrind")
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--only", "flow", "--requests", "80"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures = {
        label.strip(): (int(count.replace(",", "")), float(ratio))
        for label, count, ratio in re.findall(
            r"^flow\s+(.+?)\s+([\d,]+) instructions a request\s+([\d.]+)x bare$",
            done.stdout,
            re.MULTILINE,
        )
    }
    assert set(figures) == {"bare aiohttp", "aiohttp + msgspec decode", "router"}, done.stdout
    bare, _ = figures["bare aiohttp"]
    router, ratio = figures["router"]
    # A request costs a server tens of thousands of instructions; the router does more
    # than bare aiohttp (it signs, builds records and writes them).
    assert 20_000 < bare < router < 5_000_000
    assert ratio == pytest.approx(bare / router, abs=0.01)
