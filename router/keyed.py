"""Keyed hashes: HMAC-SHA256 without setting the key up again for every message."""

from __future__ import annotations

import hashlib
from functools import lru_cache

_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


@lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """HMAC-SHA256's inner and outer hashes with the padded key already fed in (RFC 2104)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def hmac_hex(key: bytes, data: bytes) -> str:
    """Hex HMAC-SHA256, the same as `hmac.new(key, data, sha256).hexdigest()`.

    From copies of the keyed pads: 2 us an event instead of 4.5 (a new HMAC object set up
    the key every time; it was a quarter of the Amplitude sink's CPU).
    """
    inner, outer = _pads(key)
    digest = inner.copy()
    digest.update(data)
    result = outer.copy()
    result.update(digest.digest())
    return result.hexdigest()


class Keyed:
    """HMAC-SHA256 under one key for messages that share a prefix.

    `start(prefix)` hashes the prefix once; `finish(state, rest)` gives the hex HMAC of
    prefix + rest, the same as `hmac_hex(key, prefix + rest)`, from a copy of that state.
    """

    def __init__(self, key: bytes) -> None:
        self._inner, self._outer = _pads(key)

    def start(self, prefix: bytes) -> hashlib._Hash:
        state = self._inner.copy()
        state.update(prefix)
        return state

    def finish(self, state: hashlib._Hash, rest: bytes) -> str:
        digest = state.copy()
        digest.update(rest)
        result = self._outer.copy()
        result.update(digest.digest())
        return result.hexdigest()
