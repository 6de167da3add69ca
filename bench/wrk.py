"""wrk, driven by generated Lua scripts; the script's done() hook prints the figures as JSON."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import msgspec

from .procs import pinned

MARK = "BENCH-JSON "

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    "BENCH-JSON ", summary.requests, summary.duration, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50.0), latency:percentile(99.0), latency.max))
end
"""


class WrkResult(msgspec.Struct):
    requests: int
    duration_us: int
    status_errors: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p50_us: int
    p99_us: int
    max_us: int

    @property
    def errors(self) -> int:
        return (
            self.status_errors
            + self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
        )

    @property
    def requests_per_s(self) -> float:
        return self.requests / (self.duration_us / 1e6)


def available() -> str | None:
    """None when wrk can run, else why not."""
    if shutil.which("wrk") is None:
        return "wrk is not installed (scripts/install-system-deps.sh wrk could not install it)"
    return None


def _lua_string(text: str) -> str:
    # A long bracket with enough '=' that the text cannot close it.
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def write_script(
    path: Path,
    method: str,
    body_file: Path | None = None,
    headers: Mapping[str, str] | None = None,
) -> Path:
    """A Lua script that sends one fixed request (the body read from a file) and reports."""
    lines = [f"wrk.method = {_lua_string(method)}"]
    if body_file is not None:
        lines += [
            f"local fh = assert(io.open({_lua_string(str(body_file))}, 'rb'))",
            "wrk.body = fh:read('*a')",
            "fh:close()",
        ]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


def run(
    url: str,
    script: Path,
    duration_s: float,
    cpu: int | None,
    connections: int = 64,
) -> WrkResult:
    """One wrk run, one thread (on `cpu`), `connections` keep-alive connections."""
    seconds = max(1, round(duration_s))
    argv = pinned(
        cpu,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return msgspec.json.decode(line[len(MARK) :], type=WrkResult)
    raise RuntimeError(f"wrk gave no figures (exit {done.returncode}): {done.stdout}{done.stderr}")
