"""A real memcached process on a free loopback port, for the context-store tests."""

from __future__ import annotations

import asyncio
import os
import shutil
from types import TracebackType
from typing import Self

import aiomcache

from .process import free_port

# Looked up once, at import: not in the event loop (blockbuster).
PROGRAM = shutil.which("memcached")


class Memcached:
    """`memcached -vv` in a child process; ready once it says it is listening."""

    def __init__(self, memory_mb: int = 16) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.memory_mb = memory_mb
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        program = PROGRAM
        if program is None:
            raise RuntimeError("memcached is not installed: run `make system-deps`")
        args = ["-vv", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        args += ["-m", str(self.memory_mb)]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = await asyncio.create_subprocess_exec(
            program, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    raise RuntimeError(f"memcached exited with {await self.proc.wait()}")
                if b"server listening" in line:
                    break
        # -vv logs every command: keep reading so the pipe never fills up.
        self._drain = asyncio.create_task(self._read_rest())

    async def _read_rest(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while await self.proc.stderr.read(65536):
            pass

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._drain is not None:
            await self._drain

    def client(self) -> aiomcache.Client:
        return aiomcache.Client("127.0.0.1", self.port, pool_size=1)

    async def get(self, key: str) -> bytes | None:
        """Read a key straight from this server."""
        client = self.client()
        try:
            value: bytes | None = await client.get(key.encode())
        finally:
            await client.close()
        return value

    async def clock(self) -> int:
        """memcached's own clock (whole seconds), which decides expiry."""
        client = self.client()
        try:
            stats = await client.stats()
        finally:
            await client.close()
        return int(stats[b"time"] or 0)

    async def wait_clock(self, at_least: int, timeout: float = 5.0) -> None:
        """Wait until memcached's clock reads `at_least` (it ticks once a second)."""
        async with asyncio.timeout(timeout):
            while await self.clock() < at_least:
                await asyncio.sleep(0.05)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill()
