"""Flow ids: a random salt signed with HMAC-SHA256 over the salt and the flow's begin time."""

from __future__ import annotations

import hmac
import os
import time
from enum import StrEnum
from functools import lru_cache

from ..keyed import hmac_hex


class FlowProblem(StrEnum):
    """Why a batch's flow was refused; the value is the counter's reason tag."""

    MISSING_FLOW_ID = "missing_flow_id"
    MISSING_BEGIN_TIME = "missing_flow_begin_time"
    EXPIRED = "expired_flow_begin_time"
    FUTURE = "future_flow_begin_time"
    INVALID_FLOW_ID = "invalid_flow_id"
    BAD_SIGNATURE = "invalid_signature"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FlowSigner:
    """Creates and verifies flow ids with one shared key."""

    def __init__(self, key: str | bytes, expiry_seconds: int = 7200) -> None:
        self._key = key.encode() if isinstance(key, str) else key
        self.expiry_ms = expiry_seconds * 1000
        # A flow sends many batches: remember signatures that verified.
        self._verified = lru_cache(maxsize=16384)(self._signature_ok)

    def _sign(self, salt: str, begin_time: int) -> str:
        return hmac_hex(self._key, f"{salt}\n{begin_time:x}".encode())[:32]

    def create(self, begin_time: int | None = None, salt: bytes | None = None) -> tuple[str, int]:
        """A fresh (flow id, flowBeginTime); `salt`: 16 random bytes (read here if not given)."""
        begin = now_ms() if begin_time is None else begin_time
        text = (os.urandom(16) if salt is None else salt).hex()
        return text + self._sign(text, begin), begin

    def _signature_ok(self, flow_id: str, begin_time: int) -> bool:
        salt, signature = flow_id[:32], flow_id[32:]
        return hmac.compare_digest(self._sign(salt, begin_time), signature)

    def is_valid_time(self, when: int | float | None, now: int) -> bool:
        """FxA's isValidTime: not in the future and younger than the expiry."""
        return isinstance(when, int) and now - self.expiry_ms < when <= now

    def check(self, flow_id: str | None, begin_time: int | None, now: int) -> FlowProblem | None:
        """None when the flow is good, else the reason it is not."""
        if not flow_id:
            return FlowProblem.MISSING_FLOW_ID
        if begin_time is None:
            return FlowProblem.MISSING_BEGIN_TIME
        if begin_time > now:
            return FlowProblem.FUTURE
        if begin_time <= now - self.expiry_ms:
            return FlowProblem.EXPIRED
        if len(flow_id) != 64:
            return FlowProblem.INVALID_FLOW_ID
        try:
            bytes.fromhex(flow_id)
        except ValueError:
            return FlowProblem.INVALID_FLOW_ID
        if not self._verified(flow_id.lower(), begin_time):
            return FlowProblem.BAD_SIGNATURE
        return None
