"""One check of everything before serving: every problem at once, one format, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

from router.checks import check
from router.config import load_settings
from router.ruletable import default_rules_path

from .test_cli import run

BROKEN_REGISTRY = '[events."custom.event"]\nattributes = { n = "nonsense" }\n'
BROKEN_RULE = '[exact."x.one"]\ngroup = "no-such-group"\nevent = "one"\n'


def rules_with(tmp_path: Path, text: str) -> Path:
    rules_dir = tmp_path / "rules"
    shutil.copytree(default_rules_path(), rules_dir)
    (rules_dir / "zz-broken.toml").write_text(text)
    return rules_dir


def problem_lines(stderr: str) -> set[str]:
    return {line for line in stderr.splitlines() if ": error: " in line}


def test_serve_reports_a_broken_registry_cleanly_as_rules_check_does(tmp_path: Path) -> None:
    rules_dir = rules_with(tmp_path, BROKEN_REGISTRY)
    config = tmp_path / "router.toml"
    config.write_text(f'[rules]\npaths = ["{rules_dir}"]\n')
    served = run("serve", "--config", str(config))
    assert served.returncode == 2, served.stderr
    assert "Traceback" not in served.stderr
    checked = run("rules", "check", str(rules_dir))
    assert checked.returncode == 1
    # The same problem, formatted the same way, by both commands.
    lines = problem_lines(checked.stderr)
    assert any('zz-broken.toml:1: error: events."custom.event"' in line for line in lines), lines
    assert lines <= problem_lines(served.stderr)


def test_every_startup_problem_is_reported_at_once(tmp_path: Path) -> None:
    rules_dir = rules_with(tmp_path, BROKEN_REGISTRY)
    vwo_settings = tmp_path / "vwo-settings.json"
    vwo_settings.write_text('{"features": "not a list"}')
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "router.toml"
    config.write_text(
        f'[rules]\npaths = ["{rules_dir}"]\n'
        f'[spool]\npath = "{blocker / "spool"}"\n'
        f'[sinks.vwo]\naccount_id = 1\nsdk_key = "k"\nsettings_path = "{vwo_settings}"\n'
    )
    result = run("serve", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    err = result.stderr
    assert 'zz-broken.toml:1: error: events."custom.event"' in err  # the registry
    assert f"{vwo_settings}: error: [sinks.vwo] settings_path: not a VWO settings file" in err
    assert f"{config}: error: spool.path: " in err and "is not a directory" in err
    assert f"{config}: error: deadletter.path: " in err
    assert "start-up check: 4 error(s)" in err
    # `rules check --config` checks what the config names too.
    again = run("rules", "check", "--config", str(config))
    assert again.returncode == 1
    assert problem_lines(again.stderr) == problem_lines(err)


def test_a_rule_table_that_does_not_compile_exits_1_as_before(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text(f'[rules]\npaths = ["{rules_with(tmp_path, BROKEN_RULE)}"]\n')
    result = run("serve", "--config", str(config))
    assert result.returncode == 1, result.stderr
    assert "zz-broken.toml:1: error: exact 'x.one': group" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_vwo_settings_file_is_a_startup_problem(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text(
        f'[spool]\npath = "{tmp_path / "spool"}"\n'
        f'[sinks.vwo]\naccount_id = 1\nsdk_key = "k"\nsettings_path = "{tmp_path / "nope.json"}"\n'
    )
    checked = check(load_settings(config, environ={}), config=str(config))
    assert [(p.where, p.message) for p in checked.errors] == [
        ("[sinks.vwo] settings_path", "cannot read: No such file or directory")
    ]
    assert checked.ruleset is not None  # the rules themselves are fine


def test_the_forwarder_is_checked_before_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text(
        f'[deadletter]\npath = "{tmp_path}"\n[sinks.jetstream]\nid_key = "k"\n[sinks.memory]\n'
    )
    result = run("forward", "--destination", "memory", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "deadletter.path: " in result.stderr and "is a directory" in result.stderr
