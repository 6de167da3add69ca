"""Running the real router as a child process, for signal and shutdown tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RouterProcess:
    """`metrics-router serve --config FILE` in a child process.

    `command` replaces `python -m <module>` (an installed `metrics-router` script); with
    `stdout` the records the log sink prints are written to that file.
    """

    def __init__(
        self,
        config: Path | None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        module: str = "router",
        *,
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        stdout: Path | None = None,
    ) -> None:
        self.config = config
        self.args = list(args)
        self.env = env or {}
        self.command = list(command) if command else [sys.executable, "-m", module]
        self.cwd = cwd
        self.stdout = stdout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_lines: list[str] = []

    async def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_ROUTER_")}
        env.update(self.env)
        config = ["--config", str(self.config)] if self.config else []
        out = self.stdout.open("wb") if self.stdout else None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                "serve",
                *config,
                "--port",
                str(self.port),
                *self.args,
                stdout=out or asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=self.cwd,
            )
        finally:
            if out is not None:
                out.close()
        await self.wait_for_line("listening on", timeout)

    async def wait_for_line(self, needle: str, timeout: float = 20.0) -> str:
        """Read stderr until a line containing `needle` (lines are kept)."""
        assert self.proc is not None and self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            for line in self.stderr_lines:
                if needle in line:
                    return line
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError(f"router exited before {needle!r}: {self.stderr_lines}")
                line = raw.decode(errors="replace")
                self.stderr_lines.append(line)
                if needle in line:
                    return line

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None and self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            rest = await self.proc.stderr.read()
            self.stderr_lines.extend(rest.decode(errors="replace").splitlines(keepends=True))
            return await self.proc.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
