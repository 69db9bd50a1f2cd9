"""User-Agent features: browser family and version, staleness, automation tokens.

Browser family/version and OS come from ua-parser (uap-core rules on its Rust regex backend);
crawlers from the crawler-user-agents pattern list, compiled into one ua-parser resolver so all
1,500 patterns are matched in one pass by the same Rust engine. Only a few documented tokens
(link previews, mail proxies, HTTP libraries, headless browsers) are hand-written below because
neither list names them as such. Each distinct UA is parsed once and cached.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from .ip import distinct
from .reference import Reference

# The feature columns produced by UaParser.parse, defined once: (name, dtype, description).
UA_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("ua_empty", "uint8", "User-Agent missing or blank"),
    ("ua_bare_mozilla", "uint8", 'User-Agent is exactly "Mozilla/5.0" (a common scanner disguise)'),
    (
        "ua_family",
        "int8",
        "browser family: 0 none/unrecognised, 1 chrome, 2 safari, 3 firefox, 4 edge, "
        "5 samsung internet, 6 opera, 7 ie, 8 other recognised client",
    ),
    ("ua_major", "int16", "browser major version; -1 unknown"),
    (
        "ua_versions_behind",
        "float32",
        "newest major of the family among the vendored real-browser UAs minus this major "
        "(negative: newer than the list); NaN when unknown",
    ),
    ("ua_is_mobile", "uint8", "mobile/tablet OS (iOS, Android, ...) or a 'Mobi' token"),
    ("ua_http_library", "uint8", "HTTP client library (python-requests, curl, okhttp, Java, ...)"),
    (
        "ua_headless",
        "uint8",
        "headless/automated browser (HeadlessChrome, PhantomJS, Playwright...)",
    ),
    ("ua_crawler", "uint8", "matches the crawler-user-agents list"),
    (
        "ua_link_preview",
        "uint8",
        "link-preview fetcher token (facebookexternalhit, Twitterbot, WhatsApp, Slackbot...)",
    ),
    ("ua_mail_proxy", "uint8", "mail image proxy token (GoogleImageProxy, YahooMailProxy, ggpht)"),
    ("ua_length", "int32", "length of the User-Agent in characters; 0 when missing"),
)

FAMILY_CODES: dict[str, int] = {
    "none": 0,
    "chrome": 1,
    "safari": 2,
    "firefox": 3,
    "edge": 4,
    "samsung_internet": 5,
    "opera": 6,
    "ie": 7,
    "other": 8,
}

# ua-parser family names -> our family, by prefix, first match wins (order matters: "Chrome
# Mobile iOS" is Chrome, "Mobile Safari UI/WKWebView" is Safari).
_FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("Edge", "edge"),
    ("Samsung Internet", "samsung_internet"),
    ("Opera", "opera"),
    ("IE", "ie"),
    ("Chrome", "chrome"),
    ("HeadlessChrome", "chrome"),
    ("Chromium", "chrome"),
    ("Mobile Safari", "safari"),
    ("Safari", "safari"),
    ("Firefox", "firefox"),
)

_MOBILE_OS = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "HarmonyOS"}
)

# Hand-written tokens, documented here because the libraries above do not classify them.
LINK_PREVIEW_TOKENS = (
    "facebookexternalhit",
    "Facebot",
    "Twitterbot",
    "WhatsApp",
    "TelegramBot",
    "Slackbot",
    "Slack-ImgProxy",
    "Discordbot",
    "SkypeUriPreview",
    "Google-PageRenderer",
    "LinkedInBot",
    "redditbot",
    "Iframely",
    "Embedly",
    "vkShare",
)
MAIL_PROXY_TOKENS = ("GoogleImageProxy", "YahooMailProxy", "ggpht.com")
# HTTP client libraries, matched as a product token "name/version".
HTTP_LIBRARY_TOKENS = (
    "python-requests",
    "python-urllib",
    "python-httpx",
    "httpx",
    "aiohttp",
    "curl",
    "Wget",
    "Go-http-client",
    "okhttp",
    "Java",
    "Apache-HttpClient",
    "libwww-perl",
    "axios",
    "node-fetch",
    "undici",
)
HEADLESS_TOKENS = ("HeadlessChrome", "PhantomJS", "puppeteer", "Playwright", "SlimerJS")


# Case-insensitive substring tests: a handful of `in` checks beat a regex per distinct UA.
_LINK_PREVIEW = tuple(t.lower() for t in LINK_PREVIEW_TOKENS)
_MAIL_PROXY = tuple(t.lower() for t in MAIL_PROXY_TOKENS)
_HEADLESS = tuple(t.lower() for t in HEADLESS_TOKENS)
_HTTP_LIBRARY = tuple(t.lower() + "/" for t in HTTP_LIBRARY_TOKENS)
# A library token must start the UA or follow a separator ("Java/" but not "JavaScript/").
_HTTP_LIBRARY_RE = re.compile(
    r"(?:^|[\s(;,])(?:" + "|".join(re.escape(t) for t in _HTTP_LIBRARY) + ")"
)


def _has_http_library(lower: str) -> bool:
    return any(t in lower for t in _HTTP_LIBRARY) and _HTTP_LIBRARY_RE.search(lower) is not None


_INT16_MAX = np.iinfo(np.int16).max


def family_code(ua_parser_family: str | None) -> int:
    """Our family code for a ua-parser family name (0 when nothing was recognised)."""
    if not ua_parser_family or ua_parser_family == "Other":
        return 0
    for prefix, family in _FAMILY_PREFIXES:
        if ua_parser_family.startswith(prefix):
            return FAMILY_CODES[family]
    return FAMILY_CODES["other"]


def _major(value: str | None) -> int:
    if value and value.isdigit():
        return min(int(value), _INT16_MAX)
    return -1


class UaParser:
    """Parses User-Agent strings into the UA_FEATURES columns, each distinct UA once."""

    def __init__(self, reference: Reference, cache_size: int = 200_000) -> None:
        # Heavy third-party imports and regex compilation happen here, not at module import.
        import crawleruseragents
        from ua_parser import BestAvailableResolver, load_lazy_builtins
        from ua_parser.core import Domain
        from ua_parser.matchers import UserAgentMatcher

        # No ua-parser cache layer: this class already parses each distinct UA once.
        self._resolver = BestAvailableResolver(load_lazy_builtins())
        self._domains = Domain.USER_AGENT | Domain.OS
        self._ua_domain = Domain.USER_AGENT
        patterns = [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
        self._crawlers = BestAvailableResolver(
            ([UserAgentMatcher(p, family="crawler") for p in patterns], [], [])
        )
        self._cache: dict[str, tuple[Any, ...]] = {}
        self._cache_size = cache_size
        self.newest_major = self._newest_majors(reference.user_agents["user_agent"])

    def _newest_majors(self, real_uas: pd.Series) -> dict[int, int]:
        """Newest major version per family among the vendored real-browser UAs."""
        newest: dict[int, int] = {}
        for ua in pd.unique(real_uas.dropna()):
            parsed = self._resolver(ua, self._ua_domain).user_agent
            if parsed is None:
                continue
            code, major = family_code(parsed.family), _major(parsed.major)
            if code not in (0, FAMILY_CODES["other"]) and major >= 0:
                newest[code] = max(newest.get(code, major), major)
        return newest

    def parse_one(self, ua: str | None) -> tuple[Any, ...]:
        """Feature values of one UA, in UA_FEATURES order (cached per distinct string)."""
        key = ua if isinstance(ua, str) else ""
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        row = self._compute(key)
        if len(self._cache) >= self._cache_size:
            # Drop the oldest half: cheap, and a scoring process sees a slowly drifting UA mix.
            for old in list(self._cache)[: self._cache_size // 2]:
                del self._cache[old]
        self._cache[key] = row
        return row

    def _compute(self, ua: str) -> tuple[Any, ...]:
        text = ua.strip()
        if not text:
            return (1, 0, 0, -1, math.nan, 0, 0, 0, 0, 0, 0, len(ua))
        result = self._resolver(text, self._domains)
        parsed, os = result.user_agent, result.os
        code = family_code(parsed.family if parsed else None)
        major = _major(parsed.major) if parsed else -1
        newest = self.newest_major.get(code)
        behind = float(newest - major) if newest is not None and major >= 0 else math.nan
        mobile = (os is not None and os.family in _MOBILE_OS) or "Mobi" in text
        crawler = self._crawlers(text, self._ua_domain).user_agent is not None
        lower = text.lower()
        return (
            0,
            int(text == "Mozilla/5.0"),
            code,
            major,
            behind,
            int(mobile),
            int(_has_http_library(lower)),
            int(any(t in lower for t in _HEADLESS)),
            int(crawler),
            int(any(t in lower for t in _LINK_PREVIEW)),
            int(any(t in lower for t in _MAIL_PROXY)),
            len(ua),
        )

    def parse(self, uas: pd.Series | np.ndarray) -> dict[str, np.ndarray]:
        """UA_FEATURES columns for a column of User-Agent strings (missing values allowed)."""
        codes, uniques = distinct(uas)
        # The extra trailing row is what factorize's -1 (missing) code indexes.
        rows = [self.parse_one(u if isinstance(u, str) else str(u)) for u in uniques]
        rows.append(self.parse_one(None))
        columns = list(zip(*rows, strict=True))
        out = {
            name: np.asarray(col, dtype=dtype)[codes]
            for (name, dtype, _), col in zip(UA_FEATURES, columns, strict=True)
        }
        # A grouping key, not a feature: equal strings share it within this call (-1: missing).
        out["ua_key"] = codes.astype(np.int64)
        return out
