from __future__ import annotations

import asyncio
import json
from unittest import mock

import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from router.app import make_app
from router.config import Settings, override
from router.handlers.common import client_ip, read_body, request_info
from router.ruletable import RuleTable
from router.sinks.memory import MemorySink
from router.stats import Stats

from ..conftest import AiohttpClient
from ..support.bodies import body


@pytest.mark.parametrize(
    ("xff", "trusted", "expected"),
    [
        (None, 0, "10.0.0.9"),
        ("1.2.3.4", 0, "10.0.0.9"),  # not trusting anyone: the peer
        ("1.2.3.4", 1, "1.2.3.4"),
        ("6.6.6.6, 1.2.3.4", 1, "1.2.3.4"),  # a forged left entry is ignored
        ("6.6.6.6, 1.2.3.4, 172.16.0.1", 2, "1.2.3.4"),
        ("1.2.3.4", 5, "1.2.3.4"),  # fewer hops than proxies: the leftmost
        # FxA's remote-address (fxa-shared/express/remote-address.ts) skips entries that
        # are not IP addresses before counting clientAddressDepth (= trusted_proxies + 1).
        ("1.2.3.4, unknown", 1, "1.2.3.4"),
        ("81.2.69.160, not-an-ip , 1.2.3.4", 2, "81.2.69.160"),
        ("2001:db8::1", 1, "2001:db8::1"),
        ("garbage", 1, "10.0.0.9"),  # nothing valid but the peer
    ],
)
def test_client_ip(xff: str | None, trusted: int, expected: str) -> None:
    headers = {"X-Forwarded-For": xff} if xff else {}
    request = make_mocked_request("GET", "/", headers=headers)
    request._transport_peername = ("10.0.0.9", 1234)
    assert client_ip(request, trusted) == expected


def test_request_info_headers() -> None:
    request = make_mocked_request(
        "GET",
        "/",
        headers={"DNT": "1", "Accept-Language": "de-DE,de;q=0.9", "User-Agent": "UA"},
    )
    info = request_info(request, 0)
    # The raw header: the pipeline matches it against [flow] supported_locales.
    assert info.dnt and info.accept_language == "de-DE,de;q=0.9" and info.user_agent == "UA"


# -- read_body: the buffered fast path and aiohttp's read() -------------------------------


def _payload(chunks: list[bytes], eof: bool) -> streams.StreamReader:
    protocol = mock.Mock(_reading_paused=False)  # a pure unit: aiohttp's real StreamReader
    payload = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    for chunk in chunks:
        payload.feed_data(chunk)
    if eof:
        payload.feed_eof()
    return payload


@pytest.mark.parametrize("chunks", [[b'{"a": 1}'], [b'{"a"', b": 1}"], []])
async def test_read_body_takes_a_body_that_has_arrived(chunks: list[bytes]) -> None:
    payload = _payload(chunks, eof=True)
    request = make_mocked_request("POST", "/metrics", payload=payload, client_max_size=1024)
    assert await read_body(request) == b"".join(chunks)
    assert payload.at_eof()


async def test_read_body_waits_for_the_rest_of_a_body() -> None:
    payload = _payload([b'{"a"'], eof=False)
    request = make_mocked_request("POST", "/metrics", payload=payload, client_max_size=1024)

    def rest() -> None:  # runs once read_body has found the body incomplete and waits
        payload.feed_data(b": 1}")
        payload.feed_eof()

    asyncio.get_running_loop().call_soon(rest)
    assert await read_body(request) == b'{"a": 1}'


@pytest.mark.parametrize("eof", [True, False])
async def test_read_body_refuses_past_the_limit_on_either_path(eof: bool) -> None:
    payload = _payload([b"x" * 1025], eof=eof)
    request = make_mocked_request("POST", "/metrics", payload=payload, client_max_size=1024)
    if not eof:
        payload.feed_eof()  # read() sees the size on its first chunk
    with pytest.raises(web.HTTPRequestEntityTooLarge):
        await read_body(request)


async def test_a_whole_body_past_max_body_bytes_is_413(
    aiohttp_client: AiohttpClient, settings: Settings, rules: RuleTable, stats: Stats
) -> None:
    small = override(settings, server={"max_body_bytes": 1024})
    client = await aiohttp_client(make_app(small, rules=rules, sinks=[MemorySink()], stats=stats))
    data = json.dumps(body([("flow.signin.submit", 1)] * 40)).encode()
    assert len(data) > 1024
    resp = await client.post("/metrics", data=data, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["validation"] == {"keys": ["$"]}
