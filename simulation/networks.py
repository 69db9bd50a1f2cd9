"""Drawing IP addresses and User-Agents from the vendored reference data.

Every address comes from a real range of the vendored tables (an ASN's announced ranges or a
provider's published CIDRs) so the enrichment the model sees (ASN, organisation, network flags)
is the one a real event from that network would get. Addresses are drawn into *pools* (a
contact's home IP, a domain's scanner IPs, the Apple proxy IPs in use) and events index into the
pools, so string formatting is per pool entry, never per event.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

import crawleruseragents
import numpy as np
import pandas as pd

from core.errors import BotfilterError
from features.enrichment.reference import Reference

_U64 = np.uint64


@dataclass(frozen=True)
class RangeSet:
    """IPv4 and IPv6 ranges (inclusive) to draw addresses from, with the ASN of each range."""

    v4_start: np.ndarray  # uint64 (IPv4 as integers)
    v4_end: np.ndarray
    v4_asn: np.ndarray  # int64, -1 = unknown (resolved from the ASN table)
    v6_start_hi: np.ndarray  # uint64
    v6_start_lo: np.ndarray
    v6_end_hi: np.ndarray
    v6_end_lo: np.ndarray
    v6_asn: np.ndarray

    @property
    def has_v4(self) -> bool:
        return self.v4_start.size > 0

    @property
    def has_v6(self) -> bool:
        return self.v6_start_hi.size > 0


class IpTable:
    """Append-only table of IP strings (and their ASN, -1 if unknown); events hold indices."""

    def __init__(self) -> None:
        self._ips: list[np.ndarray] = []
        self._asns: list[np.ndarray] = []
        self.size = 0

    def add(self, ips: np.ndarray, asns: np.ndarray) -> np.ndarray:
        """Append addresses; returns their indices."""
        idx = np.arange(self.size, self.size + len(ips), dtype=np.int64)
        self._ips.append(np.asarray(ips, dtype=object))
        self._asns.append(np.asarray(asns, dtype=np.int64))
        self.size += len(ips)
        return idx

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All addresses and ASNs in index order."""
        if not self._ips:
            return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
        return np.concatenate(self._ips), np.concatenate(self._asns)


class StringTable:
    """Append-only, de-duplicated table of strings (User-Agents, URLs); events hold indices."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._values: list[str] = []

    def add(self, values: np.ndarray | list[str]) -> np.ndarray:
        """Indices of the given strings, adding the new ones (per distinct value, not per row)."""
        uniq, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
        codes = np.empty(len(uniq), dtype=np.int64)
        for i, v in enumerate(uniq):  # per distinct string
            code = self._index.get(v)
            if code is None:
                code = self._index[v] = len(self._values)
                self._values.append(v)
            codes[i] = code
        return codes[inverse.reshape(-1)]

    def values(self) -> np.ndarray:
        out = np.empty(len(self._values), dtype=object)
        out[:] = self._values
        return out


def format_ipv4(ints: np.ndarray) -> np.ndarray:
    """Dotted quads for integer IPv4 addresses (vectorised)."""
    a = np.asarray(ints, dtype=np.uint64)
    parts = [
        pd.Series(((a >> _U64(s)) & _U64(255)).astype(np.int64)).astype(str) for s in (24, 16, 8, 0)
    ]
    # pandas-stubs reject a list of Series as ``others``, which str.cat documents and takes.
    return parts[0].str.cat(parts[1:], sep=".").to_numpy(dtype=object)  # type: ignore[arg-type]


def format_ipv6(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Canonical RFC 5952 text for 128-bit addresses split in two halves (vectorised).

    Addresses whose longest run of zero groups is 2 or more (compressed to ``::``) are rare
    among drawn addresses and go through :mod:`ipaddress`; the rest are joined column-wise.
    """
    n = len(hi)
    shifts = np.arange(48, -1, -16, dtype=np.uint64)
    groups = np.concatenate(
        [(hi[:, None] >> shifts) & _U64(0xFFFF), (lo[:, None] >> shifts) & _U64(0xFFFF)], axis=1
    ).astype(np.int64)
    zero = groups == 0
    run: np.ndarray = np.zeros(n, dtype=np.int64)
    longest: np.ndarray = np.zeros(n, dtype=np.int64)
    for col in range(8):  # 8 groups, vectorised over addresses
        run = np.where(zero[:, col], run + 1, 0)
        longest = np.maximum(longest, run)
    out = np.empty(n, dtype=object)
    simple = longest < 2
    hexes = _hextets()
    if simple.any():
        cols = [pd.Series(hexes[groups[simple, c]]) for c in range(8)]
        # pandas-stubs reject a list of Series as ``others``, which str.cat documents and takes.
        out[simple] = cols[0].str.cat(cols[1:], sep=":").to_numpy(dtype=object)  # type: ignore[arg-type]
    for i in np.flatnonzero(~simple):  # rare: addresses with '::'
        out[i] = str(ipaddress.IPv6Address((int(hi[i]) << 64) | int(lo[i])))
    return out


@functools.lru_cache(maxsize=1)
def _hextets() -> np.ndarray:
    """'0'..'ffff' as an object array indexed by value."""
    return np.asarray([f"{v:x}" for v in range(65536)], dtype=object)


class Networks:
    """Address and User-Agent sampler over one :class:`Reference`."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self._v4_start = ref.ipv4_start.astype(np.uint64)
        self._v4_end = ref.ipv4_end.astype(np.uint64)

    # --- range sets ----------------------------------------------------------------------
    def asn_ranges(self, asns: tuple[int, ...] | list[int], what: str) -> RangeSet:
        """The announced ranges of some ASNs; fails clearly if none of them is in the table."""
        ref = self.ref
        wanted = tuple(sorted(set(int(a) for a in asns)))
        m4, m6 = _asn_rows(ref, wanted)
        if m4.size == 0 and m6.size == 0:
            raise BotfilterError(
                f"no address ranges for {what} (ASNs {list(wanted)}) in the ASN table"
            )
        return RangeSet(
            self._v4_start[m4],
            self._v4_end[m4],
            ref.ipv4_asn[m4].astype(np.int64),
            ref.ipv6_start_hi[m6],
            ref.ipv6_start_lo[m6],
            ref.ipv6_end_hi[m6],
            ref.ipv6_end_lo[m6],
            ref.ipv6_asn[m6].astype(np.int64),
        )

    def network_ranges(self, category: str) -> RangeSet:
        """The published CIDRs of a provider category (``Reference.networks``)."""
        return _cidr_ranges(self.ref, category)

    # --- drawing ---------------------------------------------------------------------------
    def draw(
        self, rng: np.random.Generator, ranges: RangeSet, n: int, v6_share: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` addresses (strings) and their ASNs (-1 unknown); ``v6_share`` of them IPv6 when
        the ranges have IPv6 (and all of them IPv6 when they have no IPv4)."""
        if n == 0:
            return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
        if not ranges.has_v6:
            v6: np.ndarray = np.zeros(n, dtype=bool)
        elif not ranges.has_v4:
            v6 = np.ones(n, dtype=bool)
        else:
            v6 = rng.random(n) < v6_share
        ips = np.empty(n, dtype=object)
        asns = np.full(n, -1, dtype=np.int64)
        n6 = int(v6.sum())
        if n - n6:
            ints, asn = _draw_v4(rng, ranges, n - n6)
            ips[~v6] = format_ipv4(ints)
            asns[~v6] = np.where(asn >= 0, asn, self._lookup_v4(ints))
        if n6:
            hi, lo, asn = _draw_v6(rng, ranges, n6)
            ips[v6] = format_ipv6(hi, lo)
            asns[v6] = np.where(asn >= 0, asn, self._lookup_v6(hi, lo))
        return ips, asns

    def _lookup_v4(self, ints: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self._v4_start, ints, side="right") - 1
        ok = (i >= 0) & (ints <= self._v4_end[np.maximum(i, 0)])
        return np.where(ok, self.ref.ipv4_asn[np.maximum(i, 0)].astype(np.int64), -1)

    def _lookup_v6(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        ref = self.ref
        i = np.searchsorted(ref.ipv6_start_hi, hi, side="right") - 1
        # Ranges sharing a high half: step back while the range starts after the address.
        for _ in range(8):
            j = np.maximum(i, 0)
            back = (i >= 0) & (ref.ipv6_start_hi[j] == hi) & (ref.ipv6_start_lo[j] > lo)
            if not back.any():
                break
            i = np.where(back, i - 1, i)
        j = np.maximum(i, 0)
        end_hi, end_lo = ref.ipv6_end_hi[j], ref.ipv6_end_lo[j]
        ok = (i >= 0) & ((hi < end_hi) | ((hi == end_hi) & (lo <= end_lo)))
        return np.where(ok, ref.ipv6_asn[j].astype(np.int64), -1)

    # --- user agents -----------------------------------------------------------------------
    def browser_uas(self, pattern: str, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Real browser UAs matching a regex (and device category), with their weights."""
        return _browser_uas(self.ref, pattern, device)


def _draw_v4(rng: np.random.Generator, r: RangeSet, n: int) -> tuple[np.ndarray, np.ndarray]:
    size = (r.v4_end - r.v4_start + _U64(1)).astype(np.float64)
    cum = np.cumsum(size)
    x = rng.random(n) * cum[-1]
    k = np.minimum(np.searchsorted(cum, x, side="right"), len(cum) - 1)
    offset = np.floor(x - (cum[k] - size[k])).astype(np.uint64)
    offset = np.minimum(offset, (size[k] - 1).astype(np.uint64))
    ints = r.v4_start[k] + offset
    # Avoid .0 and .255 host parts where the range allows: they are rarely client addresses.
    last = ints & _U64(255)
    bump_up = (last == 0) & (ints < r.v4_end[k])
    bump_down = (last == 255) & (ints > r.v4_start[k])
    ints = ints + bump_up.astype(np.uint64) - bump_down.astype(np.uint64)
    return ints, r.v4_asn[k]


def _draw_v6(
    rng: np.random.Generator, r: RangeSet, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Ranges weighted by the log of their /64 count: big allocations are favoured, not absolute.
    span_hi = r.v6_end_hi - r.v6_start_hi
    weight = np.log2(span_hi.astype(np.float64) + 2.0)
    k = rng.choice(len(weight), size=n, p=weight / weight.sum())
    span = span_hi[k]
    draw = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64).astype(np.uint64)
    hi = r.v6_start_hi[k] + np.where(
        span == _U64(np.iinfo(np.uint64).max), draw, draw % (span + _U64(1))
    )
    lo = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64).astype(np.uint64) * _U64(
        2
    ) + rng.integers(0, 2, size=n, dtype=np.int64).astype(np.uint64)
    lo = np.where(hi == r.v6_start_hi[k], np.maximum(lo, r.v6_start_lo[k]), lo)
    lo = np.where(hi == r.v6_end_hi[k], np.minimum(lo, r.v6_end_lo[k]), lo)
    return hi, lo, r.v6_asn[k]


@functools.lru_cache(maxsize=4)
def _asn_order(ref: Reference) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the ASN tables sorted by ASN (stable, so ranges stay in address order)."""
    o4 = np.argsort(ref.ipv4_asn, kind="stable")
    o6 = np.argsort(ref.ipv6_asn, kind="stable")
    return o4, ref.ipv4_asn[o4].astype(np.int64), o6, ref.ipv6_asn[o6].astype(np.int64)


@functools.lru_cache(maxsize=256)
def _asn_rows(ref: Reference, asns: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (address order) of the IPv4 and IPv6 ranges announced by some ASNs."""
    o4, s4, o6, s6 = _asn_order(ref)
    a = np.asarray(asns, dtype=np.int64)
    out = []
    for order, keys in ((o4, s4), (o6, s6)):
        lo, hi = np.searchsorted(keys, a, side="left"), np.searchsorted(keys, a, side="right")
        chunks = [order[i:j] for i, j in zip(lo, hi, strict=True)]
        out.append(np.sort(np.concatenate(chunks)) if chunks else np.empty(0, np.int64))
    return out[0], out[1]


@functools.lru_cache(maxsize=64)
def _cidr_ranges(ref: Reference, category: str) -> RangeSet:
    cidrs = ref.networks.get(category)
    if not cidrs:
        raise BotfilterError(f"no published ranges for network category {category!r}")
    text = pd.Series(cidrs, dtype=object)
    is_v6 = text.str.contains(":", regex=False).to_numpy()
    # IPv4 CIDRs parsed column-wise; IPv6 (a few thousand at most) through ipaddress.
    v4 = text[~is_v6].str.split("/", expand=True) if (~is_v6).any() else None
    if v4 is not None:
        octets = v4[0].str.split(".", expand=True).astype(np.uint64).to_numpy()
        addr = (
            (octets[:, 0] << _U64(24))
            | (octets[:, 1] << _U64(16))
            | (octets[:, 2] << _U64(8))
            | octets[:, 3]
        )
        host = (_U64(1) << (_U64(32) - v4[1].astype(np.uint64).to_numpy())) - _U64(1)
        v4s, v4e = addr & ~host & _U64(0xFFFFFFFF), (addr & ~host & _U64(0xFFFFFFFF)) | host
    else:
        v4s = v4e = np.empty(0, dtype=np.uint64)
    v6 = []
    for cidr in text[is_v6]:  # per IPv6 CIDR of the vendored list, once per process
        addr, _, plen = cidr.partition("/")
        hostmask = (1 << (128 - int(plen or 128))) - 1
        a = int(ipaddress.IPv6Address(addr)) & ~hostmask
        b = a | hostmask
        v6.append((a >> 64, a & 0xFFFFFFFFFFFFFFFF, b >> 64, b & 0xFFFFFFFFFFFFFFFF))
    v6a = np.asarray(v6, dtype=np.uint64).reshape(-1, 4)
    return RangeSet(
        v4s,
        v4e,
        np.full(len(v4s), -1, dtype=np.int64),
        v6a[:, 0].copy(),
        v6a[:, 1].copy(),
        v6a[:, 2].copy(),
        v6a[:, 3].copy(),
        np.full(len(v6a), -1, dtype=np.int64),
    )


@functools.lru_cache(maxsize=64)
def _browser_uas(ref: Reference, pattern: str, device: str | None) -> tuple[np.ndarray, np.ndarray]:
    ua = ref.user_agents
    mask = ua["user_agent"].str.contains(pattern, regex=True).to_numpy()
    if device is not None:
        mask &= (ua["device_category"] == device).to_numpy()
    if not mask.any():
        raise BotfilterError(f"no vendored User-Agent matches {pattern!r} ({device})")
    weights = ua["weight"].to_numpy()[mask]
    return ua["user_agent"].to_numpy()[mask], weights / weights.sum()


def apple_mail_ua(safari_uas: np.ndarray) -> np.ndarray:
    """Apple Mail's WebKit UA from the same device's Safari UA (Mail omits Version/ and Safari/)."""
    s = pd.Series(safari_uas, dtype=object).str.replace(r" Version/\S+", "", regex=True)
    return s.str.replace(r" Safari/\S+", "", regex=True).to_numpy(dtype=object)


_CHROME = re.compile(r"Chrome/(\d+)\.")


def outdated_chrome_uas(rng: np.random.Generator, n: int) -> np.ndarray:
    """Old desktop Chrome UAs (major 41-109 on Windows 7/8.1/10) as scanners send them."""
    major = rng.integers(41, 110, size=n)
    build = rng.integers(2000, 5500, size=n)
    patch = rng.integers(10, 200, size=n)
    nt = np.asarray(
        ["6.1; WOW64", "6.3; Win64; x64", "10.0; Win64; x64", "6.1; Win64; x64"], dtype=object
    )
    os_part = nt[rng.integers(0, len(nt), size=n)]
    frame = pd.DataFrame(
        {"os": os_part, "v": major.astype(str), "b": build.astype(str), "p": patch.astype(str)}
    )
    return (
        "Mozilla/5.0 (Windows NT "
        + frame["os"]
        + ") AppleWebKit/537.36 (KHTML, like Gecko) Chrome/"
        + frame["v"]
        + ".0."
        + frame["b"]
        + "."
        + frame["p"]
        + " Safari/537.36"
    ).to_numpy(dtype=object)


@functools.lru_cache(maxsize=1)
def crawler_user_agents() -> dict[str, tuple[str, ...]]:
    """Crawler UA instances from the crawler-user-agents package: googlebot, bingbot, other."""
    out: dict[str, list[str]] = {"googlebot": [], "bingbot": [], "other": []}
    for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA:
        pattern = entry.get("pattern", "")
        key = (
            "googlebot"
            if pattern.startswith("Googlebot")
            else "bingbot"
            if "bingbot" in pattern
            else "other"
        )
        for inst in entry.get("instances", []):
            # Previewers and mail proxies are modelled on their own; keep them out of "crawler".
            if key == "other" and re.search(
                r"facebookexternalhit|Twitterbot|TelegramBot|WhatsApp|GoogleImageProxy|YahooMailProxy",
                inst,
            ):
                continue
            out[key].append(inst)
    if not all(out.values()):
        raise BotfilterError("crawler-user-agents package lacks Googlebot/bingbot instances")
    return {k: tuple(sorted(set(v))) for k, v in out.items()}
