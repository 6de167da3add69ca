"""Realistic FxA traffic: content-server event names, request fields and headers."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import msgspec

from router.enrich.flow import FlowSigner, now_ms

FLOW_KEY = "bench-flow-key-not-secret"
USER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0"
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": USER_AGENT,
    "Accept-Language": "en-US,en;q=0.5",
}

# A sign-up/sign-in journey as the content server reports it: mostly mapped names
# (exact and fuzzy rules), a few the rule table drops, timing and performance events.
JOURNEY = [
    "screen.enter-email",
    "flow.enter-email.engage",
    "flow.enter-email.submit",
    "screen.signin",
    "flow.signin.engage",
    "flow.signin.forgot-password",
    "flow.signin.submit",
    "screen.signup",
    "flow.signup.engage",
    "flow.signup.submit",
    "screen.confirm-signup-code",
    "flow.confirm-signup-code.engage",
    "flow.confirm-signup-code.submit",
    "screen.choose-what-to-sync",
    "flow.choose-what-to-sync.engage",
    "flow.choose-what-to-sync.submit",
    "screen.connect-another-device",
    "screen.settings",
    "flow.have-account",
    "flow.timing.screen-render.250",
    "loaded",
]


def events(
    count: int, names: Sequence[str] = JOURNEY, span_ms: int = 40_000
) -> list[dict[str, Any]]:
    """`count` events walking `names`, offsets spread over `span_ms`."""
    step = max(1, span_ms // max(count, 1))
    return [{"type": names[i % len(names)], "offset": i * step} for i in range(count)]


def body(
    signer: FlowSigner,
    count: int,
    begin_ago_ms: int = 60_000,
    now: int | None = None,
    names: Sequence[str] = JOURNEY,
) -> dict[str, Any]:
    """A `POST /metrics` body with a valid flow that began `begin_ago_ms` ago."""
    now = now_ms() if now is None else now
    flow_id, begin = signer.create(now - begin_ago_ms)
    start = begin + 1000
    return {
        "flowId": flow_id,
        "flowBeginTime": begin,
        "deviceId": "0f3a6c1e9b7d4e2a8c5b1d0e7f6a9b3c",
        "startTime": start,
        "flushTime": start + 45_000,
        "duration": 45_000,
        "service": "sync",
        "lang": "en-US",
        "uid": "8f9a6c1e9b7d4e2a8c5b1d0e7f6a9b3c",
        "context": "fx_desktop_v3",
        "entrypoint": "fxa_discoverability_native",
        "broker": "fx-desktop-v3",
        "initialView": "enter-email",
        "isSampledUser": False,
        "utm_source": "firefox",
        "utm_medium": "referral",
        "utm_campaign": "fxa-embedded-form",
        "utm_content": "fx-128.0",
        "utm_term": "none",
        "syncEngines": ["bookmarks", "history", "passwords", "tabs"],
        "experiments": [{"choice": "emailFirst", "group": "treatment"}],
        "screen": {
            "width": 1920,
            "height": 1080,
            "clientWidth": 1280,
            "clientHeight": 900,
            "devicePixelRatio": 2,
        },
        "events": events(count, names),
    }


def body_bytes(
    signer: FlowSigner, count: int, now: int | None = None, names: Sequence[str] = JOURNEY
) -> bytes:
    return msgspec.json.encode(body(signer, count, now=now, names=names))


def batch_for_flow(
    flow_id: str, begin: int, rng: random.Random, count: int, elapsed_ms: int
) -> dict[str, Any]:
    """A later batch of an existing flow, sent `elapsed_ms` after the flow began."""
    start = begin + max(0, elapsed_ms - 5000)
    names = rng.sample(JOURNEY, k=min(count, len(JOURNEY)))
    names += [rng.choice(JOURNEY) for _ in range(count - len(names))]
    return {
        "flowId": flow_id,
        "flowBeginTime": begin,
        "deviceId": "0f3a6c1e9b7d4e2a8c5b1d0e7f6a9b3c",
        "startTime": start,
        "flushTime": start + 5000,
        "duration": 5000,
        "service": "sync",
        "lang": "en-US",
        "uid": "none",
        "context": "fx_desktop_v3",
        "entrypoint": "fxa_discoverability_native",
        "initialView": "enter-email",
        "utm_source": "firefox",
        "utm_campaign": "fxa-embedded-form",
        "events": [{"type": n, "offset": i * (5000 // count)} for i, n in enumerate(names)],
    }


FLOW_QUERY = (
    "entrypoint=fxa_discoverability_native&form_type=email&service=sync"
    "&context=fx_desktop_v3&utm_source=firefox&utm_campaign=fxa-embedded-form"
)
