"""The real process: readiness, SIGHUP rule reloads, SIGTERM without losing accepted events."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from router.ruletable import default_rules_path

from .conftest import FLOW_KEY
from .support.bodies import body
from .support.process import RouterProcess


def write_config(tmp_path: Path, rules_dir: Path | None = None) -> tuple[Path, Path]:
    log_path = tmp_path / "events.log"
    config = tmp_path / "router.toml"
    rules = f'[rules]\npaths = ["{rules_dir}"]\n' if rules_dir else ""
    config.write_text(
        f'[flow]\nkey = "{FLOW_KEY}"\n{rules}'
        f'[sinks.log]\npath = "{log_path}"\nlogger = "test-router"\n'
    )
    return config, log_path


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_sigterm_finishes_accepted_batches(tmp_path: Path) -> None:
    config, log_path = write_config(tmp_path)
    batches = 200
    async with RouterProcess(config) as router, aiohttp.ClientSession() as http:
        for _ in range(batches):
            data = body([("flow.signin.engage", 1), ("flow.signin.submit", 2)])
            async with http.post(f"{router.url}/metrics", json=data) as resp:
                assert resp.status == 200
        router.signal(signal.SIGTERM)
        assert await router.wait() == 0
    lines = read_lines(log_path)
    kinds = [line["Type"] for line in lines]
    assert kinds.count("flowEvent") == 2 * batches
    assert kinds.count("amplitudeEvent") == 2 * batches
    first = lines[0]
    assert first["Logger"] == "test-router" and first["EnvVersion"] == "2.0"
    assert set(first) == {
        "Timestamp",
        "Logger",
        "Type",
        "Hostname",
        "Pid",
        "EnvVersion",
        "Severity",
        "Fields",
    }


async def test_sighup_reloads_and_refuses_broken_rules(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(default_rules_path(), rules_dir)
    extra = rules_dir / "zz-extra.toml"
    config, log_path = write_config(tmp_path, rules_dir)
    async with RouterProcess(config) as router, aiohttp.ClientSession() as http:

        async def post(name: str) -> None:
            async with http.post(f"{router.url}/metrics", json=body([(name, 1)])) as resp:
                assert resp.status == 200

        await post("custom.thing")  # unmapped
        extra.write_text('[exact."custom.thing"]\ngroup = "activity"\nevent = "custom_thing"\n')
        router.signal(signal.SIGHUP)
        await router.wait_for_line("rules reloaded")
        await post("custom.thing")  # now mapped

        extra.write_text(
            '[exact."custom.other"]\ngroup = "no-such-group"\nevent = "x"\n'
            '[[fuzzy]]\nmatch = "(unclosed"\ngroup = "login"\nevent = "x"\n'
        )
        router.signal(signal.SIGHUP)
        await router.wait_for_line("rules reload refused")
        refused = [line for line in router.stderr_lines if "rules reload refused" in line]
        await post("custom.thing")  # the old table still serves
        router.signal(signal.SIGTERM)
        assert await router.wait() == 0
    assert any("no-such-group" in line for line in router.stderr_lines), refused
    assert any("unclosed" in line or "regex" in line for line in router.stderr_lines)
    types = [
        json.loads(str(line["Fields"]))["event_type"]
        if isinstance(line["Fields"], str)
        else line["Fields"]["event_type"]  # type: ignore[index]
        for line in read_lines(log_path)
        if line["Type"] == "amplitudeEvent"
    ]
    assert types == ["fxa_activity - custom_thing", "fxa_activity - custom_thing"]


FAULTS_PROBE = """
import resource, sys
from router.server import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else None
line = b"x" * 769 + b"\\n"
def cycle():
    # what a log batch does: a few MB encoded, spliced, joined, written, freed
    data = line * 4000
    spliced = data.replace(b"\\n", b"}\\n")
    del data, spliced
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    cycle()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_log_sized_buffers_reuse_heap_pages() -> None:
    # Without the tuning each 3 MB buffer is mapped and unmapped: ~750 page faults apiece.
    def faults(mode: str) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", FAULTS_PROBE, mode], capture_output=True, text=True, check=True
        )
        tuned, count = done.stdout.split()
        return tuned, int(count)

    assert faults("tuned")[0] == "True"
    untuned, tuned = faults("default")[1], faults("tuned")[1]
    assert untuned > 50 * 700  # the default behaviour this guards against
    assert tuned < 500
