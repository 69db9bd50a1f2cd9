"""User-Agent features: browser family and version, staleness, automation tokens.

Browser family/version and OS come from ua-parser (uap-core rules on its Rust regex backend).
Crawlers come from two maintained lists: Crawler-Detect's patterns (the ``crawlerdetect`` package,
matched, as that library does, after its exclusion list has stripped the browser tokens) and the
crawler-user-agents patterns. Both are compiled into ua-parser resolvers so their ~3,000 patterns
are matched in one pass each by the Rust engine (``crawlerdetect``'s own Python regex costs about
0.8 ms per distinct UA, this about 0.05 ms). A short documented list drops the few patterns that
match people: mail clients, in-app browsers, desktop apps and one Android build id. Only a few
tokens (link previews, mail proxies, HTTP libraries, headless browsers) are hand-written below
because neither list names them as such. Each distinct UA is parsed once and cached.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.coded import Coded

from .ip import distinct
from .reference import Reference

if TYPE_CHECKING:
    from ua_parser.core import Matcher, UserAgent

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
    (
        "ua_crawler",
        "uint8",
        "matches Crawler-Detect's or crawler-user-agents' crawler patterns (mail clients and"
        " in-app browsers excluded)",
    ),
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

# Crawler patterns of the two lists that match people, by exact pattern text. Each was found
# firing on a real browser, app or mail client (the vendored real-browser UAs, isbot's browser
# fixtures, the examples); a mail client's fetch is the person opening the message.
DROPPED_CRAWLER_PATTERNS: frozenset[str] = frozenset(
    {
        # Crawler-Detect: Outlook and Office desktop/mobile are mail clients, not crawlers.
        "Microsoft Office",
        "Microsoft Outlook",
        "MacOutlook\\/",
        "Outlook-Express",
        "Outlook-iOS",
        # Crawler-Detect: Apple's networking extension (Safari, iCloud Private Relay on devices).
        "NetworkingExtension",
        # Both lists: WhatsApp's in-app browser; its link preview is a link-preview token below.
        "WhatsApp",
        # Crawler-Detect: the Slack desktop app (Slackbot, the previewer, stays a link preview).
        "Slack\\/",
        # crawler-user-agents: the Sogou, Viber, Fluid, VS Code and Trae browsers/apps; Sogou's
        # spiders stay matched by "sogou web" and the generic "spider" pattern.
        "Sogou",
        "Viber",
        "Fluid",
        "Code\\/1\\.",
        "Trae\\/",
        # crawler-user-agents: an Android build id, which thousands of real phones share.
        "AP3A\\.240617\\.008",
        # crawler-user-agents: Facebook's in-app browser, and "Sonic", a token of Slack's app.
        "MetaIAB Facebook",
        "Sonic",
        # Crawler-Detect: "libwww" is also the Lynx and Mosaic browsers' library; the Perl
        # library stays an HTTP-library token ("libwww-perl/").
        "libwww",
    }
)
# Tokens of people's software that the generic patterns ("...bot...", "Fetch/") match inside a
# longer word; removed from the UA before either list is matched, as Crawler-Detect's own
# exclusions remove browser tokens.
PEOPLE_TOKENS = (
    "MozacFetch/",
    "fuboTV",
    "FuboPlayer",
    "turbotabbee",
    "Banca Caboto",
    "AmigaVoyager/",
)
_PEOPLE = re.compile("|".join(re.escape(t) for t in PEOPLE_TOKENS), re.IGNORECASE)
# Crawler-Detect patterns the Rust engine cannot run as written (look-around), rewritten.
_REWRITTEN_PATTERNS: dict[str, str] = {"Yandex(?!Search)": "Yandex(?:$|[^S]|S(?:$|[^e]))"}

# Hand-written tokens, documented here because the libraries above do not classify them.
LINK_PREVIEW_TOKENS = (
    "facebookexternalhit",
    "Facebot",
    "Twitterbot",
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
# WhatsApp's link preview is "WhatsApp/2.x.y A" at the start; its in-app browser says "WhatsApp"
# after a full browser UA, so only the leading product token counts.
_WHATSAPP_PREVIEW = re.compile(r"^whatsapp/[\d.]+")
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


# The UA cache is keyed by content and bounded by what it holds: entries, and characters (a
# request may carry 10,000 distinct 4 KiB User-Agents). Longer UAs are parsed every time.
CACHED_UA_CHARS = 1_024
CACHE_CHARS = 32_000_000


class UaParser:
    """Parses User-Agent strings into the UA_FEATURES columns, each distinct UA once."""

    def __init__(self, reference: Reference, cache_size: int = 200_000) -> None:
        # Heavy third-party imports and regex compilation happen here, not at module import:
        # ua_parser and the crawler lists cost about 0.2 s (-X importtime), which importers that
        # never parse a User-Agent (features.definitions, for the column names) do not pay.
        import crawleruseragents
        from ua_parser import BestAvailableResolver, load_lazy_builtins
        from ua_parser.core import Domain

        # Lazy: the resolver (ua-parser-rs) reads the patterns as text; the eager matchers
        # compiled every crawler pattern with Python's re first (0.23 s of every worker start).
        from ua_parser.lazy import UserAgentMatcher

        # No ua-parser cache layer: this class already parses each distinct UA once. No device
        # matchers: only the user-agent and OS domains are asked for, and building the device
        # extractor was two thirds of the resolver's build (0.14 -> 0.04 s in every worker).
        ua_matchers, os_matchers, _ = load_lazy_builtins()
        self._resolver = BestAvailableResolver((ua_matchers, os_matchers, []))
        self._domains = Domain.USER_AGENT | Domain.OS
        self._ua_domain = Domain.USER_AGENT
        from crawlerdetect.providers.crawlers import data as cd_crawlers
        from crawlerdetect.providers.exclusions import data as cd_exclusions

        def resolver(patterns: list[str], flags: str = "") -> Any:
            kept = [_REWRITTEN_PATTERNS.get(p, p) for p in patterns]
            kept = [p for p in kept if p not in DROPPED_CRAWLER_PATTERNS]
            matchers: list[Matcher[UserAgent]] = [
                UserAgentMatcher(flags + p, family="crawler") for p in kept
            ]
            return BestAvailableResolver((matchers, [], []))

        cua = [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
        self._crawlers = resolver(cua)
        # Crawler-Detect matches case-insensitively, after stripping its exclusions.
        self._cd_crawlers = resolver(list(cd_crawlers), "(?i)")
        self._cd_exclusions = re.compile("|".join(cd_exclusions), re.IGNORECASE)
        self._cache: dict[str, tuple[Any, ...]] = {}
        self._cache_size = cache_size
        self._cached_chars = 0  # the keys' characters: memory follows them, not their count
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
        if len(key) > CACHED_UA_CHARS:  # no real browser's; kept, 4 KiB ones held 0.8 GB
            return row
        if len(self._cache) >= self._cache_size or self._cached_chars >= CACHE_CHARS:
            # Drop the oldest half: cheap, and a scoring process sees a slowly drifting UA mix.
            for old in list(self._cache)[: len(self._cache) // 2]:
                del self._cache[old]
                self._cached_chars -= len(old)
        self._cache[key] = row
        self._cached_chars += len(key)
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
        crawler = self._is_crawler(text)
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
            int(
                any(t in lower for t in _LINK_PREVIEW) or _WHATSAPP_PREVIEW.match(lower) is not None
            ),
            int(any(t in lower for t in _MAIL_PROXY)),
            len(ua),
        )

    def _is_crawler(self, text: str) -> bool:
        """Either crawler list matches (Crawler-Detect on the UA less its exclusions)."""
        text = _PEOPLE.sub("", text)
        if self._crawlers(text, self._ua_domain).user_agent is not None:
            return True
        # Stripping only removes text, so a UA whose whole string matches no Crawler-Detect
        # pattern is let go without the costly (Python regex) stripping: most real browsers.
        if self._cd_crawlers(text, self._ua_domain).user_agent is None:
            return False
        stripped = self._cd_exclusions.sub("", text).strip()
        return (
            bool(stripped) and self._cd_crawlers(stripped, self._ua_domain).user_agent is not None
        )

    def parse(self, uas: pd.Series | np.ndarray | Coded) -> dict[str, np.ndarray]:
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
