"""Building request bodies the way a browser would."""

from __future__ import annotations

from typing import Any

from router.enrich.flow import FlowSigner, now_ms

from ..conftest import FLOW_KEY


def flow(begin_ago_ms: int = 10_000, key: str = FLOW_KEY) -> tuple[str, int]:
    """A valid (flowId, flowBeginTime) that began `begin_ago_ms` ago."""
    return FlowSigner(key).create(now_ms() - begin_ago_ms)


def body(events: list[tuple[str, int]], **overrides: Any) -> dict[str, Any]:
    flow_id, begin = flow()
    start = begin + 1000
    data: dict[str, Any] = {
        "flowId": flow_id,
        "flowBeginTime": begin,
        "deviceId": "0f3a6c1e9b7d4e2a8c5b1d0e7f6a9b3c",
        "startTime": start,
        "flushTime": start + 5000,
        "duration": 5000,
        "service": "sync",
        "lang": "en-US",
        "uid": "none",
        "context": "web",
        "entrypoint": "firstrun",
        "utm_source": "blog",
        "utm_campaign": "fx-welcome",
        "utm_term": "none",
        "events": [{"type": t, "offset": o} for t, o in events],
    }
    data.update(overrides)
    return data
