"""What the HTTP delivery sinks share: one keep-alive session, one `_post`, counters.

Transport failures are translated here and nowhere else (the model is httpx's
`map_httpcore_exceptions`): whatever aiohttp raises leaves as a `TransportError`
whose reason (`timeout`, `ClientConnectorError`, ...) the retry policy counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import aiohttp

from ..errors import TransportError
from .base import Sink


@contextlib.contextmanager
def transport_errors() -> Iterator[None]:
    """Translate aiohttp's failures into `TransportError`."""
    try:
        yield
    except TimeoutError as exc:
        raise TransportError("timeout", "request timed out") from exc
    except aiohttp.ClientError as exc:
        raise TransportError(type(exc).__name__, str(exc)) from exc


class HttpDeliverySink(Sink):
    """A durable sink posting to an HTTP API; subclasses classify its answers."""

    durable: ClassVar[bool] = True

    def __init__(self, name: str, *, concurrency: int, request_timeout_seconds: float) -> None:
        super().__init__(name)
        self.concurrency = concurrency
        self.request_timeout = request_timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        self._requests = asyncio.Semaphore(concurrency)
        self._tags = {"sink": name}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            connector=aiohttp.TCPConnector(limit=self.concurrency * 2),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _count(self, key: str, amount: int, **tags: str) -> None:
        if amount:
            self.stats.incr(key, amount, {**self._tags, **tags})

    def _retried(self, amount: int, reason: str) -> None:
        """The retry policy's `on_retry`: `sink.retried{reason}`."""
        self._count("sink.retried", amount, reason=reason)

    async def _post(self, url: str, **kwargs: Any) -> tuple[int, bytes]:
        """(status, body) of one POST; raises TransportError when there is no answer."""
        assert self._session is not None, "sink not started"
        async with self._requests:
            with transport_errors():
                async with self._session.post(url, **kwargs) as resp:
                    return resp.status, await resp.read()
