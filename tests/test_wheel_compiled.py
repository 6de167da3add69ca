"""The mypyc-compiled wheel (METRICS_ROUTER_COMPILE=1): built, installed outside the checkout,
its hot modules the compiled extensions, the README's first example served by it.

Slow (the compile takes a minute or two); skipped where there is no C compiler.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from hatch_build import c_compiler

from .test_wheel import ROOT, build_and_install, clean_env, readme_first_example

pytestmark = pytest.mark.skipif(c_compiler() is None, reason="no C compiler for mypyc")


def compile_list() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    modules: list[str] = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"][
        "compile"
    ]
    return modules


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = clean_env() | {"METRICS_ROUTER_COMPILE": "1"}
    return build_and_install(tmp_path_factory.mktemp("compiled"), env)


def test_the_hot_modules_are_the_compiled_extensions(compiled: Path, tmp_path: Path) -> None:
    modules = [m.removesuffix(".py").replace("/", ".") for m in compile_list()]
    assert "router.mapping.builder" in modules and "router.sinks.log" in modules
    show = "import importlib as i, sys\nfor m in sys.argv[1:]: print(i.import_module(m).__file__)"
    files = subprocess.run(
        [str(compiled / "python"), "-c", show, *modules],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout.split()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    site = compiled.parent
    assert all(f.endswith(suffix) and Path(f).is_relative_to(site) for f in files), files
    # The sources stay in the wheel beside the extensions.
    assert all(Path(f.removesuffix(suffix) + ".py").is_file() for f in files), files
    version = subprocess.run(
        [str(compiled / "metrics-router"), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout
    assert version.strip().endswith("(compiled (mypyc))"), version


async def test_readme_first_example_compiled(compiled: Path, tmp_path: Path) -> None:
    started = await readme_first_example(compiled, tmp_path)
    assert started.endswith("(compiled (mypyc))"), started


def test_asking_to_compile_without_a_compiler_fails(tmp_path: Path) -> None:
    """No quiet fallback: METRICS_ROUTER_COMPILE=1 and no compiler is a failed build."""
    env = clean_env() | {"METRICS_ROUTER_COMPILE": "1", "CC": "no-such-cc"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(tmp_path)]
        + [str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode != 0
    assert "no C compiler was found" in done.stdout + done.stderr
    assert not list(tmp_path.glob("*.whl"))
    assert shutil.which("no-such-cc") is None
