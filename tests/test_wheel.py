"""The package as a user installs it: sdist -> wheel -> a fresh venv outside the checkout.

Every other test imports the checkout (an editable install); this one catches a wheel that
leaves files behind (the bundled rules and registry) or a command that only works from the
repository. Dependencies come from the package index through pip's cache.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

import aiohttp
import pytest

from .compose.check import FLOW_QUERY, readme_body
from .support.process import RouterProcess

ROOT = Path(__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    """The environment minus anything that would point the child at the checkout."""
    drop = ("METRICS_ROUTER_", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def build_and_install(base: Path, env: dict[str, str] | None = None) -> Path:
    """The `bin/` of a fresh venv under `base` holding the wheel built from the sdist of ROOT."""
    dist = base / "dist"
    # `python -m build` makes the sdist, then the wheel *from the sdist*: a file missing
    # from either is missing from the install.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        env=env or clean_env(),
    )
    (wheel,) = dist.glob("metrics_router-*.whl")
    (sdist,) = dist.glob("metrics_router-*.tar.gz")
    assert sdist.stat().st_size > 0
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + [str(wheel)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    return bin_dir


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin/` of a fresh venv holding the (pure Python) wheel built from ROOT."""
    return build_and_install(tmp_path_factory.mktemp("wheel"))


def run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "metrics-router"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import router.ruletable as r; print(r.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.parent), where
    assert not Path(where).is_relative_to(ROOT)
    # The default wheel is pure Python, whatever METRICS_ROUTER_COMPILE says in this shell.
    assert run(installed, tmp_path, "--version").stdout.strip().endswith("(pure Python)")


def test_rules_check_and_explain_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    checked = run(installed, tmp_path, "rules", "check")
    assert checked.returncode == 0, checked.stderr
    assert "no such file" not in checked.stdout + checked.stderr
    explained = run(installed, tmp_path, "rules", "explain", "flow.signin.submit")
    assert explained.returncode == 0, explained.stderr
    assert "fxa_login - submit" in explained.stdout
    assert "rules/" in explained.stdout  # the bundled file that matched
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


async def test_readme_first_example_against_the_wheel(installed: Path, tmp_path: Path) -> None:
    started = await readme_first_example(installed, tmp_path)
    assert started.endswith("(pure Python)"), started


async def readme_first_example(bin_dir: Path, tmp_path: Path) -> str:
    """README "First example": a flow, its events posted, the mozlog lines on stdout.

    Returns the router's start-up line ("... listening on ... (<build kind>)").
    """
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "stdout.log"
    # An empty PYTHONPATH counts as unset: a PYTHONPATH pointing at the checkout would win.
    router = RouterProcess(
        None, {"PYTHONPATH": ""}, command=[str(bin_dir / "metrics-router")], cwd=empty, stdout=out
    )
    async with router, aiohttp.ClientSession() as http:
        async with http.get(f"{router.url}/metrics-flow?{FLOW_QUERY}") as resp:
            assert resp.status == 200
            flow = await resp.json()
        async with http.post(f"{router.url}/metrics", json=readme_body(flow)) as resp:
            assert resp.status == 200
            assert await resp.json() == {"success": True}
        # SIGTERM drains the sinks: every accepted record is on stdout once it exits.
        router.signal(signal.SIGTERM)
        assert await router.wait() == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    flow_events = [x["Fields"]["event"] for x in lines if x["Type"] == "flowEvent"]
    amplitude = [x["Fields"]["event_type"] for x in lines if x["Type"] == "amplitudeEvent"]
    assert flow_events == ["flow.begin", "flow.signin.view", "flow.signin.submit"]
    assert amplitude == ["fxa_login - view", "fxa_login - submit"]
    assert all(x["Fields"]["flow_id"] == flow["flowId"] for x in lines if x["Type"] == "flowEvent")
    return next(line for line in router.stderr_lines if "listening on" in line).strip()
