"""A real headless Chromium driven over the DevTools protocol (aiohttp's websocket client).

Chromium comes from Debian (`scripts/install-system-deps.sh chromium`, run by
`make test`); nothing is downloaded at test time.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Chromium on PATH: run `./scripts/install-system-deps.sh chromium` (make test does)"
    )


class Page:
    """One tab, attached with a flat session; `evaluate` awaits promises."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def navigate(self, url: str) -> None:
        await self.browser.call("Page.enable", session=self.session)
        loaded = self.browser.expect("Page.loadEventFired", self.session)
        await self.browser.call("Page.navigate", {"url": url}, session=self.session)
        await asyncio.wait_for(loaded, 30)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=self.session,
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")


class Browser:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[tuple[str, str | None, asyncio.Future[None]]] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data:
                reply = self._replies.pop(data["id"], None)
                if reply is not None and not reply.done():
                    reply.set_result(data)
                continue
            for waiting in list(self._events):
                method, session, fired = waiting
                if data.get("method") == method and data.get("sessionId") == session:
                    self._events.remove(waiting)
                    if not fired.done():
                        fired.set_result(None)

    def expect(self, method: str, session: str | None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._events.append((method, session, future))
        return future

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ident] = future
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_json(message)
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def new_page(self) -> Page:
        target = await self.call("Target.createTarget", {"url": "about:blank"})
        attached = await self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        return Page(self, attached["sessionId"])

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Browser]:
    """A fresh headless Chromium with its own profile directory, closed on exit."""
    proc = await asyncio.create_subprocess_exec(
        chromium_path(),
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        url = await asyncio.wait_for(_devtools_url(proc.stderr), 60)
        # Keep reading its log so a full pipe never stalls the browser.
        drain = asyncio.get_running_loop().create_task(_drain(proc.stderr))
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
                browser = Browser(ws)
                try:
                    yield browser
                finally:
                    await browser.close()
        finally:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def _devtools_url(stderr: asyncio.StreamReader) -> str:
    seen: list[bytes] = []
    while line := await stderr.readline():
        seen.append(line)
        found = _LISTENING.search(line)
        if found:
            return found.group(1).decode()
    raise RuntimeError(f"chromium exited before DevTools listened: {b''.join(seen)[-2000:]!r}")


async def _drain(stderr: asyncio.StreamReader) -> None:
    while await stderr.read(65536):
        pass
