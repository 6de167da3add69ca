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
