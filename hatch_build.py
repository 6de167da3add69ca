"""Hatch build hook: with METRICS_ROUTER_COMPILE=1, the wheel's hot modules compiled by mypyc.

Without the variable (the default) the hook does nothing: the wheel is pure Python, as
`pip install` everywhere expects. With it, a build that cannot compile fails and says why;
an opt-in never quietly gives a pure Python wheel. The modules to compile are listed in
pyproject.toml (`[tool.hatch.build.targets.wheel.hooks.custom] compile`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENV = "METRICS_ROUTER_COMPILE"

# Run in a scratch copy of router/ with no pyproject.toml beside it: setuptools (which
# mypyc drives) would read ours and reject fields it does not know in older versions.
SETUP = """\
import sys
from mypyc.build import mypycify
from setuptools import setup

setup(
    name="metrics-router-mypyc",
    ext_modules=mypycify(sys.argv[1:], group_name="router", opt_level="3"),
    script_args=["build_ext", "--inplace"],
)
"""


def wanted() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def c_compiler() -> str | None:
    """The C compiler setuptools would call, if it is on PATH."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(cc.split()[0])


class CompileHook(BuildHookInterface[BuilderConfig]):
    scratch: Path | None = None

    def dependencies(self) -> list[str]:
        if not wanted():
            return []
        # mypyc type-checks with the real packages, so the runtime dependencies too.
        return ["mypy>=1.11", "setuptools>=61", *self.metadata.core.dependencies]

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or not wanted():
            return
        if version == "editable":
            # An editable install imports the checkout's sources; there is nothing to put .so
            # files beside.
            self.app.display_warning(f"{ENV}: an editable install stays pure Python")
            return
        modules = self.config.get("compile", [])
        if not modules:
            raise RuntimeError(f"{ENV}=1: no modules listed under the hook's `compile`")
        if c_compiler() is None:
            raise RuntimeError(
                f"{ENV}=1 but no C compiler was found: install one (e.g. gcc) and the Python "
                f"headers, or build without {ENV} for the pure Python wheel"
            )
        try:
            import mypyc  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                f"{ENV}=1 but mypyc (from mypy) is not importable: pip install mypy, "
                f"or build without {ENV} for the pure Python wheel"
            ) from exc
        self.scratch = Path(tempfile.mkdtemp(prefix="metrics-router-mypyc-"))
        root = Path(self.root)
        shutil.copytree(
            root / "router", self.scratch / "router", ignore=shutil.ignore_patterns("__pycache__")
        )
        (self.scratch / "setup.py").write_text(SETUP)
        self.app.display_info(f"mypyc: compiling {len(modules)} modules (about a minute)")
        done = subprocess.run(
            [sys.executable, "setup.py", "--config-file", str(root / "pyproject.toml"), *modules],
            cwd=self.scratch,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise RuntimeError(f"mypyc failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        # The group's shared library (router__mypyc) at the top, one small shim per module.
        candidates = [*self.scratch.glob("*"), *(self.scratch / "router").rglob("*")]
        built = [p for p in candidates if p.name.endswith(tuple(EXTENSION_SUFFIXES))]
        names = {p.relative_to(self.scratch).as_posix().split(".")[0] for p in built}
        missing = [m for m in modules if m.removesuffix(".py") not in names]
        if missing:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise RuntimeError(f"mypyc built no extension for {missing}")
        for path in built:
            build_data["force_include"][str(path)] = path.relative_to(self.scratch).as_posix()
        # A platform wheel (cp3XX-cp3XX-<platform>); the .py sources stay beside the .so files.
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
