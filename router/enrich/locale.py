"""Flow-event `locale`: i18n-abide's best match of Accept-Language against supported languages.

i18n-abide (`lib/i18n.js`: parseAcceptLanguage, bestLanguage, languageFrom, localeFrom)
sorts the header's tags by quality, takes the first that is supported, or whose primary
subtag is, and writes it as a locale (`en-US` -> `en_US`, `sr-Latn-RS` -> `sr_RS`).
"""

from __future__ import annotations

# fxa-shared/l10n/supportedLanguages.json, plus `en-US`: FxA's content server answers
# `en-US` with `en_US` (its deployed list carries it), so ours does too.
FXA_SUPPORTED_LANGUAGES = (
    "ar", "ast", "az", "bg", "bn-BD", "cs", "cy", "da", "de", "dsb", "en", "en-GB", "en-US",
    "es", "es-AR", "es-CL", "es-ES", "es-MX", "et", "fa", "ff", "fi", "fr", "fy", "he",
    "hi-IN", "hsb", "hu", "id", "it", "ja", "ka", "kab", "kk", "ko", "lt", "lv", "nl",
    "nn-NO", "pa", "pl", "pt", "pt-BR", "pt-PT", "rm", "ro", "ru", "sk", "sl", "sq", "sr",
    "sr-LATN", "sv", "sv-SE", "te", "tr", "uk", "zh-CN", "zh-TW",
)  # fmt: skip
FXA_DEFAULT_LANGUAGE = "en"

_MAX_HEADER = 256  # browsers send far less; longer headers are cut before parsing


def parse_accept_language(header: str) -> list[str]:
    """The header's language tags, highest quality first (a stable sort, as in V8)."""
    tags: list[tuple[float, str]] = []
    for raw in header[:_MAX_HEADER].split(","):
        parts = raw.split(";")
        quality = 1.0
        if len(parts) > 1 and parts[1].startswith("q="):
            quality = _parse_float(parts[1][2:].split("=", 1)[0])
        tags.append((quality, parts[0].strip()))
    return [tag for _, tag in sorted(tags, key=lambda t: -t[0])]


def _parse_float(text: str) -> float:
    """JavaScript's parseFloat: the longest numeric prefix; NaN keeps the default 1."""
    end = 0
    seen_dot = False
    for char in text.strip():
        if char.isdigit() and char.isascii():
            end += 1
        elif char == "." and not seen_dot:
            seen_dot = True
            end += 1
        else:
            break
    try:
        return float(text.strip()[:end])
    except ValueError:
        return 1.0


def _recase(parts: list[str], sep: str) -> str | None:
    """i18n-abide's casing: `ll`, `ll<sep>CC` (of two or three parts, the last); else None."""
    if len(parts) == 1:
        return parts[0].lower()
    if len(parts) in (2, 3):
        return f"{parts[0].lower()}{sep}{parts[-1].upper()}"
    return None


def language_from(locale: str) -> str:
    cased = _recase(locale.replace("_", "-").split("-"), "-")
    return locale if cased is None else cased


def locale_from(language: str) -> str:
    cased = _recase(language.split("-"), "_")
    return language if cased is None else cased


class LocaleMatcher:
    """Accept-Language header -> locale, with a bounded cache of headers seen."""

    def __init__(
        self,
        supported: list[str] | tuple[str, ...] = FXA_SUPPORTED_LANGUAGES,
        default: str = FXA_DEFAULT_LANGUAGE,
        cache_size: int = 4096,
    ) -> None:
        self.supported = frozenset(s.lower() for s in supported)
        self.default = default
        self.cache_size = cache_size
        self._cache: dict[str, str] = {}

    def best_language(self, header: str) -> str:
        supported = self.supported
        for tag in parse_accept_language(header):
            if tag.lower() in supported:
                return tag
            primary = tag.split("-")[0]
            if primary.lower() in supported:
                return primary
        return self.default

    def locale(self, header: str) -> str:
        # Only the part that is parsed is a key: long hostile headers cost no memory.
        header = header[:_MAX_HEADER]
        cached = self._cache.get(header)
        if cached is not None:
            return cached
        found = locale_from(language_from(self.best_language(header)))
        if len(self._cache) >= self.cache_size:
            self._cache.clear()  # hostile floods of distinct headers: stay bounded
        self._cache[header] = found
        return found
