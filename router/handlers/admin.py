"""Operator endpoints: `GET /__tap__` (a live stream, `[admin] token`) and `GET /__openapi__`.

With several workers, the worker that takes a tap request subscribes to every other
worker's tap socket (`worker-<k>/tap.sock`, served by `tap_socket_ctx`) and merges
their lines into its answer, so one tap sees every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from ..errors import BadRequest
from ..state import SETTINGS, STATS, TAP
from ..watching.openapi import document_bytes
from ..watching.tap import Subscriber, TapDropped, TapFilter, TapHello, encode_line, line_decoder
from .common import add_routes, require_bearer

log = logging.getLogger(__name__)

# How long a worker waits for the others to subscribe before it answers without them.
PEER_TIMEOUT = 5.0
# How often an idle stream checks that its client is still there.
IDLE_CHECK = 2.0
# A worker socket path longer than this cannot be bound (sun_path is 108 bytes).
MAX_SOCKET_PATH = 100


async def close_taps(app: web.Application) -> None:
    """on_shutdown: end every tap stream, which would otherwise hold up the drain."""
    app[TAP].close()


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


def _filters(request: web.Request) -> TapFilter:
    try:
        return TapFilter.from_query(request.query)
    except ValueError as exc:
        name = str(exc)
        raise BadRequest(f"invalid {name}", f"$.query.{name}", "bad_query") from exc


async def get_tap(request: web.Request) -> web.StreamResponse:
    """Every worker's lines (the public endpoint)."""
    return await _stream(request, fan_in=True)


async def get_tap_local(request: web.Request) -> web.StreamResponse:
    """This worker's lines only (its tap socket, asked by another worker)."""
    return await _stream(request, fan_in=False)


async def _stream(request: web.Request, fan_in: bool) -> web.StreamResponse:
    token = request.app[SETTINGS].admin.token
    require_bearer(request, token)
    filters = _filters(request)
    tap = request.app[TAP]
    sub = Subscriber(filters, tap.buffer_lines)
    tap.subscribe(sub)
    relays: list[asyncio.Task[None]] = []
    try:
        workers = [tap.worker]
        if fan_in:
            joined: list[asyncio.Future[int]] = []
            for path in tap.peers():
                ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                joined.append(ready)
                relays.append(asyncio.create_task(_relay(path, filters, token, sub, ready)))
            if joined:
                done, _ = await asyncio.wait(joined, timeout=PEER_TIMEOUT)
                workers += [f.result() for f in done if f.exception() is None]
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(encode_line(TapHello(sorted(workers))))
        while not tap.closed:
            try:
                async with asyncio.timeout(IDLE_CHECK):
                    await sub.wake.wait()
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                continue
            await response.write(sub.take())
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass  # the client went away
    finally:
        tap.unsubscribe(sub)
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
    return response


async def _relay(
    path: Path, filters: TapFilter, token: str, sub: Subscriber, ready: asyncio.Future[int]
) -> None:
    """Another worker's lines into `sub`; `ready` gets its index once it is subscribed."""
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as http,
            http.get(
                "http://worker/__tap__/worker",
                params=filters.query(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=PEER_TIMEOUT),
            ) as resp,
        ):
            if resp.status != 200:
                raise ConnectionError(f"{path}: {resp.status}")
            worker: int | None = None
            async for raw in resp.content:
                if worker is None:
                    hello = line_decoder.decode(raw)
                    assert isinstance(hello, TapHello)
                    worker = hello.workers[0]
                    ready.set_result(worker)
                elif raw.startswith(b'{"type":"dropped"'):
                    dropped = msgspec.json.decode(raw, type=TapDropped)
                    sub.note_remote_drops(worker, dropped.count)
                else:
                    sub.offer(raw)
    except asyncio.CancelledError:
        raise
    except (OSError, aiohttp.ClientError, msgspec.DecodeError, AssertionError) as exc:
        # A stale socket of a worker that died, or one that is stopping: go on without it.
        log.info("tap: worker socket %s: %s", path, exc)
        if not ready.done():
            ready.set_exception(ConnectionError(str(exc)))


def tap_socket_ctx(path: Path, root: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context serving this worker's tap on a unix socket at `path`."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        tap = app[TAP]
        if len(str(path)) > MAX_SOCKET_PATH:
            log.error("tap: %s is too long for a unix socket; taps see one worker only", path)
            yield
            return
        inner = web.Application()
        # What the stream reads from its app.
        inner[SETTINGS], inner[STATS], inner[TAP] = app[SETTINGS], app[STATS], tap
        add_routes(inner, [("GET", "/__tap__/worker", get_tap_local)], app[STATS], tap)
        runner = web.AppRunner(inner, access_log=None)
        await runner.setup()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a predecessor's (this directory's lock is ours)
        site = web.UnixSite(runner, str(path))
        await site.start()
        path.chmod(0o600)
        tap.socket, tap.peer_root = path, root
        yield
        tap.peer_root = None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        await runner.cleanup()

    return ctx
