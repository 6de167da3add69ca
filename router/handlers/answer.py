"""`Answer`: a small, complete response written in one `transport.write`.

The hot endpoints answer with a few bytes of JSON. aiohttp's `Response` builds a header
multidict, fills in defaults, serialises the headers and goes through the payload writer:
measured on one core, that was a third of a bare aiohttp request's CPU. `Answer` writes
the bytes aiohttp would (the status line in the request's HTTP version, Content-Type,
Content-Length, Date, Server, and Connection where it is not the version's default) from
parts encoded once.

No `on_response_prepare` signal is sent for an Answer; the router registers none.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.web_request import BaseRequest

JSON = b"application/json"
_SERVER = b"\r\nServer: " + SERVER_SOFTWARE.encode() + b"\r\n"
_date: tuple[int, bytes] = (0, b"")
# (status, content type, body length) -> the fixed part of an answer without extra headers.
_HEADS: dict[tuple[int, bytes, int], bytes] = {}


def http_date() -> bytes:
    """The Date header's value, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


def _whole_lines(headers: bytes) -> bool:
    """`Name: value\\r\\n` lines only: no stray CR or LF can end the header block early."""
    if not headers.endswith(b"\r\n"):
        return False
    return all(
        line and b":" in line and b"\r" not in line and b"\n" not in line
        for line in headers[:-2].split(b"\r\n")
    )


class Answer(web.StreamResponse):
    """`body` with status 200 (or `status`), Content-Type `content_type`, and `headers`:
    extra header lines, each `b"Name: value\\r\\n"` (values must hold no CR or LF)."""

    def __init__(
        self,
        body: bytes,
        *,
        status: int = 200,
        content_type: bytes = JSON,
        headers: bytes = b"",
    ) -> None:
        super().__init__(status=status)
        self._answer = body
        if headers:
            if not _whole_lines(headers):
                raise ValueError(f"extra headers must be whole header lines: {headers!r}")
            self._head = self._heading(content_type, len(body), headers)
            return
        key = (status, content_type, len(body))
        head = _HEADS.get(key)
        if head is None:
            head = self._heading(content_type, len(body), b"")
            if len(_HEADS) < 256:  # statuses x types x lengths of fixed answers: few
                _HEADS[key] = head
        self._head = head

    def _heading(self, content_type: bytes, length: int, headers: bytes) -> bytes:
        """The status line after the version, the extra headers, Content-Type and -Length."""
        return (
            f" {self.status} {self.reason}\r\n".encode()
            + headers
            + b"Content-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(length).encode()
            + b"\r\n"
        )

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away before the answer")
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        self._keep_alive = keep_alive
        if request.version == HttpVersion11:
            line = b"HTTP/1.1"
            connection = b"" if keep_alive else b"Connection: close\r\n"
        else:
            line = b"HTTP/1.0"
            connection = b"Connection: keep-alive\r\n" if keep_alive else b""
        body = b"" if request.method == "HEAD" else self._answer
        transport.write(
            b"".join((line, self._head, b"Date: ", http_date(), _SERVER, connection, b"\r\n", body))
        )
        self._eof_sent = True
        self._body_length = len(body)
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None
