"""Child processes for the HTTP scenarios: pinned to a CPU, ready on a log line, measured."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpus() -> list[int]:
    """The CPUs this process may run on, sorted."""
    return sorted(os.sched_getaffinity(0))


def placement() -> tuple[int | None, int | None]:
    """(server CPU, load-generator CPU); None where there is only one CPU to share."""
    available = cpus()
    if len(available) < 2:
        return None, None
    return available[0], available[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; fields after it are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set size (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def pinned(cpu: int | None, argv: Sequence[str]) -> list[str]:
    """argv run under `taskset` on one CPU (every thread the program starts inherits it)."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


class Server:
    """A server child process: started pinned, ready once `needle` appears on its stderr."""

    def __init__(
        self,
        argv: Sequence[str],
        needle: str,
        cpu: int | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = pinned(cpu, argv)
        self.needle = needle
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=50)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        # Keep draining so a chatty server never blocks on a full pipe.
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            if self.needle in line:
                self._ready.set()
        self._ready.set()

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"server did not start: {' '.join(self.argv)}\n" + self.log())

    def log(self) -> str:
        return "\n".join(self.tail)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for a clean exit (the router drains its sinks), SIGKILL past timeout."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        reading = self._reader is not None and self._reader.is_alive()
        if self.proc.stderr is not None and not reading:
            self.proc.stderr.close()  # the reader saw EOF: nothing is left to drain
        return self.proc.returncode

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def baseline_server(port: int, cpu: int | None, mode: str = "bare") -> Server:
    """`bench.baseline` in `mode` ("bare" or "decode")."""
    argv = [sys.executable, "-m", "bench.baseline", "--port", str(port), "--mode", mode]
    return Server(argv, "baseline listening", cpu)


def router_server(config: Path, port: int, cpu: int | None) -> Server:
    argv = [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_ROUTER_")}
    server = Server(argv, "listening on", cpu)
    server.env = env
    return server


def count_lines(path: Path) -> int:
    total = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            total += chunk.count(b"\n")
    return total


def monotonic() -> float:
    return time.monotonic()
