"""User-Agent features on known strings, with exact values."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from features.enrichment.reference import load_reference
from features.enrichment.useragent import FAMILY_CODES, UA_FEATURES, UaParser, family_code

CHROME_120 = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_SAFARI_17 = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/119.0.6045.105 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
IMESSAGE_PREVIEW = "facebookexternalhit/1.1 Facebot Twitterbot/1.0"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


@pytest.fixture(scope="module")
def parser() -> UaParser:
    return UaParser(load_reference())


def row(parser: UaParser, ua: str | None) -> dict[str, object]:
    out = parser.parse(pd.Series([ua], dtype=object))
    return {k: v[0].item() for k, v in out.items()}


def test_registry_matches_output(parser: UaParser) -> None:
    out = parser.parse(np.array([CHROME_120, None], dtype=object))
    assert list(out) == [name for name, _, _ in UA_FEATURES] + ["ua_key"]
    assert out["ua_key"].tolist() == [0, -1]
    for name, dtype, _ in UA_FEATURES:
        assert out[name].dtype == np.dtype(dtype), name
        assert out[name].shape == (2,)


def test_newest_major_comes_from_the_vendored_list(parser: UaParser) -> None:
    uas = load_reference().user_agents["user_agent"]
    chrome = uas.str.extract(r"(?:Chrome|CriOS)/(\d+)")[0].dropna().astype(int)
    assert parser.newest_major[FAMILY_CODES["chrome"]] == chrome.max()


@pytest.mark.parametrize("ua", [None, "", "   "])
def test_empty(parser: UaParser, ua: str | None) -> None:
    r = row(parser, ua)
    assert r["ua_empty"] == 1 and r["ua_family"] == 0 and r["ua_major"] == -1
    assert math.isnan(r["ua_versions_behind"])
    assert r["ua_length"] == (len(ua) if ua else 0)


def test_bare_mozilla(parser: UaParser) -> None:
    r = row(parser, "Mozilla/5.0")
    assert (r["ua_bare_mozilla"], r["ua_empty"], r["ua_family"], r["ua_length"]) == (1, 0, 0, 11)


def test_real_chrome_120(parser: UaParser) -> None:
    r = row(parser, CHROME_120)
    newest = parser.newest_major[FAMILY_CODES["chrome"]]
    assert (r["ua_family"], r["ua_major"]) == (1, 120)
    assert r["ua_versions_behind"] == newest - 120
    assert r["ua_is_mobile"] == 0
    automation = ("ua_http_library", "ua_headless", "ua_crawler", "ua_link_preview")
    assert [r[k] for k in automation] == [0, 0, 0, 0]


def test_iphone_safari(parser: UaParser) -> None:
    r = row(parser, IPHONE_SAFARI_17)
    assert (r["ua_family"], r["ua_major"], r["ua_is_mobile"]) == (2, 17, 1)
    assert r["ua_versions_behind"] == parser.newest_major[FAMILY_CODES["safari"]] - 17


def test_imessage_link_preview(parser: UaParser) -> None:
    r = row(parser, IMESSAGE_PREVIEW)
    assert (r["ua_link_preview"], r["ua_crawler"], r["ua_mail_proxy"]) == (1, 1, 0)
    assert r["ua_family"] == 8


def test_gmail_image_proxy(parser: UaParser) -> None:
    r = row(parser, GMAIL_PROXY)
    assert (r["ua_mail_proxy"], r["ua_link_preview"], r["ua_headless"]) == (1, 0, 0)


def test_http_library(parser: UaParser) -> None:
    r = row(parser, "python-requests/2.31.0")
    assert (r["ua_http_library"], r["ua_family"], r["ua_major"]) == (1, 8, 2)
    assert math.isnan(r["ua_versions_behind"])  # no browser family, no staleness
    assert row(parser, "Java/1.8.0_151")["ua_http_library"] == 1
    assert row(parser, "Mozilla/5.0 (compatible; JavaScript engine)")["ua_http_library"] == 0


def test_headless(parser: UaParser) -> None:
    r = row(parser, HEADLESS)
    assert (r["ua_headless"], r["ua_family"], r["ua_major"]) == (1, 1, 119)


def test_googlebot(parser: UaParser) -> None:
    r = row(parser, GOOGLEBOT)
    assert (r["ua_crawler"], r["ua_link_preview"], r["ua_http_library"]) == (1, 0, 0)


def test_each_distinct_parsed_once_and_missing_rows(parser: UaParser) -> None:
    uas = pd.Series([CHROME_120, None, CHROME_120, GOOGLEBOT, None], dtype=object)
    before = len(parser._cache)
    out = parser.parse(uas)
    assert out["ua_family"].tolist() == [1, 0, 1, 8, 0]
    assert out["ua_empty"].tolist() == [0, 1, 0, 0, 1]
    assert len(parser._cache) - before <= 3
    categorical = parser.parse(uas.astype("category"))
    for name, _, _ in UA_FEATURES:
        np.testing.assert_array_equal(out[name], categorical[name], err_msg=name)


def test_cache_is_bounded(parser: UaParser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser, "_cache", {})
    monkeypatch.setattr(parser, "_cache_size", 4)
    out = parser.parse(pd.Series([f"agent/{i}" for i in range(10)] + ["agent/0"]))
    assert len(parser._cache) <= 4
    assert out["ua_length"].tolist() == [7] * 10 + [7]


def test_cache_is_bounded_by_what_it_holds(parser: UaParser, monkeypatch) -> None:
    """Long distinct User-Agents filled the cache by count only (4 KiB each: 0.8 GB allowed)."""
    import features.enrichment.useragent as useragent

    monkeypatch.setattr(parser, "_cache", {})
    monkeypatch.setattr(parser, "_cached_chars", 0)
    monkeypatch.setattr(useragent, "CACHE_CHARS", 5_000)
    long = [f"Mozilla/5.0 {i} " + "x" * 4_000 for i in range(5)]
    parser.parse(pd.Series(long))
    assert set(parser._cache) == {""}  # longer than CACHED_UA_CHARS: parsed, not kept
    parser.parse(pd.Series([f"agent/{i} " + "y" * 900 for i in range(20)]))
    held = sum(len(k) for k in parser._cache)
    assert held == parser._cached_chars and held <= 5_000 + 1_000
    assert 0 < len(parser._cache) < 20


@pytest.mark.parametrize(
    ("family", "code"),
    [
        ("Chrome Mobile iOS", 1),
        ("Chrome Mobile WebView", 1),
        ("Mobile Safari UI/WKWebView", 2),
        ("Firefox iOS", 3),
        ("Edge Mobile", 4),
        ("Samsung Internet", 5),
        ("Opera Mini", 6),
        ("IE Mobile", 7),
        ("Yandex Browser", 8),
        ("Other", 0),
        (None, 0),
    ],
)
def test_family_codes(family: str | None, code: int) -> None:
    assert family_code(family) == code


def test_family_vocabulary_is_documented() -> None:
    description = dict((n, d) for n, _, d in UA_FEATURES)["ua_family"]
    for name, code in FAMILY_CODES.items():
        assert re.search(rf"\b{code} {name.replace('_', ' ')}", description), name


# Issue 16: real phones and in-app browsers that narrow patterns took for crawlers.
PEOPLE = {
    "android build id AP3A.240617.008": (
        "Mozilla/5.0 (Linux; Android 15; CPH2557 Build/AP3A.240617.008; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/142.0.7444.142 Mobile Safari/537.36"
    ),
    "whatsapp in-app browser": (
        "Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 "
        "WhatsApp/2.23.25.83"
    ),
    "sogou mobile browser": (
        "Mozilla/5.0 (Linux; Android 13; SM-A135F) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36 SogouMobileBrowser/5.38.9"
    ),
    "facebook in-app browser": (
        "Mozilla/5.0 (Linux; Android 16; Pixel 10 Pro XL Build/CP1A.260305.018; wv) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/146.0.7680.174 Mobile "
        "Safari/537.36 MetaIAB Facebook"
    ),
    "slack desktop app": (
        "Mozilla/5.0 (Windows NT 10.0.18362; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Slack/4.4.2 Chrome/78.0.3904.130 Electron/7.2.1 Safari/537.36 WindowsStore/10.0.18362 "
        "Sonic Slack_SSB/4.4.2"
    ),
    "outlook desktop": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.8431; Pro)",
    "outlook ios": "Outlook-iOS/709.2189947.prod.iphone (3.24.0)",
    "firefox android fetch": "MozacFetch/49.0.20200702190156",
}


@pytest.mark.parametrize("ua", list(PEOPLE.values()), ids=list(PEOPLE))
def test_people_are_not_crawlers(parser: UaParser, ua: str) -> None:
    r = row(parser, ua)
    assert (r["ua_crawler"], r["ua_link_preview"], r["ua_http_library"]) == (0, 0, 0)


@pytest.mark.parametrize(
    "ua",
    [
        "Barracuda Sentinel (EE)",
        "Mozilla/5.0 (compatible; AWS Security Scanner)",
        "Mozilla/5.0 (compatible; Sogou web spider/4.0; +http://www.sogou.com/docs/help/webmasters.htm#07)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36 Yandex",
    ],
)
def test_scanners_and_crawlers_are_recognised(parser: UaParser, ua: str) -> None:
    assert row(parser, ua)["ua_crawler"] == 1


def test_whatsapp_link_preview_is_the_leading_token_only(parser: UaParser) -> None:
    assert row(parser, "WhatsApp/2.23.20.0 A")["ua_link_preview"] == 1
    assert row(parser, PEOPLE["whatsapp in-app browser"])["ua_link_preview"] == 0


def test_building_the_parser_compiles_no_python_regex_per_crawler_pattern(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crawler lists (about 1,500 patterns) go to ua-parser-rs as text: the eager matchers
    compiled each with Python's re first, 0.23 s of every worker's start."""
    compiled: list[str] = []
    compile_ = re.compile

    def counting(pattern, flags=0):  # noqa: ANN001, ANN202
        compiled.append(pattern)
        return compile_(pattern, flags)

    reference = load_reference()
    monkeypatch.setattr(re, "compile", counting)
    built = UaParser(reference)
    assert len(compiled) < 100
    assert row(built, GOOGLEBOT)["ua_crawler"] == 1  # the patterns still match
