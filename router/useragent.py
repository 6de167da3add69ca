"""User-Agent parsing with ua-parser, cached per distinct string."""

from __future__ import annotations

from functools import lru_cache

import msgspec
from ua_parser import parse as _parse


class UserAgent(msgspec.Struct, frozen=True):
    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device: str | None = None
    form_factor: str | None = None


def _version(*parts: str | None) -> str | None:
    kept = [p for p in parts if p]
    return ".".join(kept) if kept else None


_MOBILE_OS = frozenset({"iOS", "Android", "Firefox OS", "Windows Phone", "BlackBerry OS"})


@lru_cache(maxsize=4096)
def parse_user_agent(text: str) -> UserAgent:
    """Browser, OS and form factor of a User-Agent header (bounded cache)."""
    if not text:
        return UserAgent()
    result = _parse(text[:1024])
    ua, os_, device = result.user_agent, result.os, result.device
    browser = ua.family if ua and ua.family != "Other" else None
    os_name = os_.family if os_ and os_.family != "Other" else None
    model = device.family if device and device.family != "Other" else None
    if model and model.lower() in ("ipad", "tablet") or "Tablet" in text or "iPad" in text:
        form_factor = "tablet"
    elif os_name in _MOBILE_OS or "Mobile" in text:
        form_factor = "mobile"
    elif os_name:
        form_factor = "desktop"
    else:
        form_factor = None
    return UserAgent(
        browser=browser,
        browser_version=_version(ua.major, ua.minor) if browser and ua else None,
        os=os_name,
        os_version=_version(os_.major, os_.minor) if os_name and os_ else None,
        device=model,
        form_factor=form_factor,
    )
