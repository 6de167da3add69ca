"""`Answer` writes what aiohttp's own Response would, byte for byte but the Date value.

Over a raw socket to a real server, so the status line, the headers, the keep-alive
behaviour and HEAD are what a client sees.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from router.handlers.answer import Answer

from ..support.delivery import AiohttpServer

BODY = b'{"success":true}'


async def stock(request: web.Request) -> web.StreamResponse:
    return web.Response(body=BODY, content_type="application/json", headers=_extra(request))


async def answer(request: web.Request) -> web.StreamResponse:
    extra = "".join(f"{k}: {v}\r\n" for k, v in _extra(request).items())
    return Answer(BODY, headers=extra.encode())


def _extra(request: web.Request) -> dict[str, str]:
    return {"Vary": "Origin"} if "extra" in request.query else {}


@pytest.fixture
async def server(aiohttp_server: AiohttpServer) -> TestServer:
    app = web.Application()
    app.router.add_get("/stock", stock)
    app.router.add_get("/answer", answer)
    return await aiohttp_server(app)


async def exchange(server: TestServer, request: bytes, answers: int = 1) -> list[bytes]:
    """Send raw request bytes; the raw answers (up to `answers` of them, or until close)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        out = []
        for _ in range(answers):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            body = b"" if request.startswith(b"HEAD") else await reader.readexactly(length)
            out.append(re.sub(rb"Date: [^\r]+", b"Date: -", head + body))
        return out
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_line, headers",
    [
        ("GET {path} HTTP/1.1", ""),
        ("GET {path} HTTP/1.1", "Connection: close\r\n"),
        ("GET {path} HTTP/1.0", ""),
        ("GET {path} HTTP/1.0", "Connection: keep-alive\r\n"),
        ("HEAD {path} HTTP/1.1", ""),
        ("GET {path}?extra=1 HTTP/1.1", ""),
    ],
)
async def test_answer_is_the_stock_response_byte_for_byte(
    server: TestServer, request_line: str, headers: str
) -> None:
    def request(path: str) -> bytes:
        return f"{request_line.format(path=path)}\r\nHost: x\r\n{headers}\r\n".encode()

    assert await exchange(server, request("/answer")) == await exchange(server, request("/stock"))


async def test_a_kept_alive_connection_serves_the_next_request(server: TestServer) -> None:
    one = b"GET /answer HTTP/1.1\r\nHost: x\r\n\r\n"
    first, second = await exchange(server, one + one, answers=2)
    assert first == second and first.endswith(BODY)


async def test_a_closing_request_gets_connection_close_and_the_socket_closes(
    server: TestServer,
) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /answer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)  # EOF: the server closed
    writer.close()
    assert b"Connection: close\r\n" in data and data.endswith(BODY)


@pytest.mark.parametrize("bad", [b"X: a\r\nY: b", b"X: a\nY: b\r\n", b"X: a\r\n\r\nY: b\r\n"])
def test_extra_headers_must_be_whole_lines(bad: bytes) -> None:
    with pytest.raises(ValueError, match="whole header lines"):
        Answer(BODY, headers=bad)
