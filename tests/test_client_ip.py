from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from router.handlers.common import client_ip, request_info


@pytest.mark.parametrize(
    ("xff", "trusted", "expected"),
    [
        (None, 0, "10.0.0.9"),
        ("1.2.3.4", 0, "10.0.0.9"),  # not trusting anyone: the peer
        ("1.2.3.4", 1, "1.2.3.4"),
        ("6.6.6.6, 1.2.3.4", 1, "1.2.3.4"),  # a forged left entry is ignored
        ("6.6.6.6, 1.2.3.4, 172.16.0.1", 2, "1.2.3.4"),
        ("1.2.3.4", 5, "1.2.3.4"),  # fewer hops than proxies: the leftmost
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
    assert info.dnt and info.locale == "de-DE" and info.user_agent == "UA"
