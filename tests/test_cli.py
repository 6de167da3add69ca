"""The command line, run as a user would: `python -m router ...`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=60
    )


def test_rules_check_bundled_rules_pass() -> None:
    result = run("rules", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_rules_check_reports_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        '[groups]\nlogin = "fxa_login"\n'
        '[exact."x.one"]\ngroup = "nope"\nevent = "one"\n'
        '[[fuzzy]]\nmatch = "(unclosed"\ngroup = "login"\nevent = "x"\n'
    )
    (tmp_path / "b.toml").write_text('[exact."x.two"]\ngroup = "login"\nevent = "bad event"\n')
    result = run("rules", "check", str(tmp_path))
    assert result.returncode == 1
    err = result.stderr
    assert "a.toml" in err and "b.toml" in err
    assert "nope" in err
    assert "unclosed" in err or "regex" in err.lower()
    assert "x.two" in err


def test_rules_explain() -> None:
    result = run("rules", "explain", "flow.reset-password.submit", "flow.signin.engage", "zzz")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fxa_login - forgot_submit" in out
    assert "fxa_login - engage" in out
    assert "zzz" in out


def test_bad_config_lists_problems(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text('[server]\nport = "x"\nnope = 1\n')
    result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert "server.port" in result.stderr and "server.nope: unknown key" in result.stderr
