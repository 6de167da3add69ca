"""User-Agent fields as FxA writes them: ua-parser (uap-core) results, made safe, cached.

FxA (`fxa-shared/lib/user-agent.ts` over node-uap, `mapBrowser`/`mapOs`/`mapFormFactor`
in `fxa-shared/metrics/amplitude.ts`): a family not matching `^[\\w ]{1,32}$` is dropped,
as is family `Other`; the version is the parser's full version string (UA: major.minor.
patch; OS: also patch_minor) and is dropped when it does not match `^[\\w.]{1,16}$`; the
device model is the device family, set only when the parser found a brand other than
`Generic`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import msgspec
import ua_parser

# JavaScript's \w is ASCII only.
_VALID_FAMILY = re.compile(r"^[\w ]{1,32}$", re.ASCII).match
_VALID_VERSION = re.compile(r"^[\w.]{1,16}$", re.ASCII).match

# A few common agents parsed at start-up, so the first request pays no warm-up.
_WARM_UP = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36",
)


class UserAgent(msgspec.Struct, frozen=True):
    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device_model: str | None = None


def version_string(*parts: str | None) -> str:
    """node-uap's toVersionString: the parts up to the first missing one, dot-joined."""
    kept: list[str] = []
    for part in parts:
        if part is None or part == "":
            break
        kept.append(part)
    return ".".join(kept)


def _family(node: Any) -> str | None:
    family = getattr(node, "family", None)
    if not family or family == "Other" or not _VALID_FAMILY(family):
        return None
    return str(family)


def _version(*parts: str | None) -> str | None:
    text = version_string(*parts)
    return text if text and _VALID_VERSION(text) else None


class UserAgentParser:
    """Built (and warmed) when constructed, never on the request path."""

    def __init__(self, cache_size: int = 4096) -> None:
        # ua-parser builds its global parser on first use (about 0.25 s): force it now.
        self._parser = ua_parser.parser
        self._cached = lru_cache(maxsize=cache_size)(self._parse)
        for sample in _WARM_UP:
            self._parse(sample)

    def parse(self, text: str) -> UserAgent:
        """Browser, OS and device model of a User-Agent header (bounded cache)."""
        # Only what is parsed is a key: long hostile headers cost no memory.
        return self._cached(text[:1024])

    def _parse(self, text: str) -> UserAgent:
        if not text:
            return UserAgent()
        result = self._parser.parse(text)
        ua, os_, device = result.user_agent, result.os, result.device
        browser = _family(ua)
        os_name = _family(os_)
        model = None
        if device is not None and device.brand and device.family and device.brand != "Generic":
            model = device.family
        return UserAgent(
            browser=browser,
            browser_version=_version(ua.major, ua.minor, ua.patch) if browser and ua else None,
            os=os_name,
            os_version=(
                _version(os_.major, os_.minor, os_.patch, os_.patch_minor)
                if os_name and os_
                else None
            ),
            device_model=model,
        )
