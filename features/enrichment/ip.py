"""Vectorised IP enrichment: version, ASN, stable address keys and network-category flags.

Every distinct address is parsed once (``pd.factorize``); IPv4 is parsed with numpy on the
characters, IPv6 with :mod:`ipaddress` on the distinct IPv6 values only. Lookups are
``np.searchsorted`` over sorted range tables; IPv6 values are compared as 16-byte big-endian
strings, whose byte order is the numeric order.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import BotfilterError
from features.coded import Coded

from .reference import Reference

# The feature columns produced by IpEnricher.enrich, defined once: (name, dtype, description).
IP_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("ip_version", "int8", "4 or 6; 0 when the IP is missing or not a valid address"),
    (
        "asn",
        "int64",
        "autonomous system number: the event's own asn if given, else looked up; 0 = unknown",
    ),
    (
        "ip_key",
        "int64",
        "stable key of the exact address (IPv4: its integer; IPv6: 62-bit hash"
        " tagged with bit 62); -1 = missing",
    ),
    (
        "prefix_key",
        "int64",
        "stable key of the /24 (IPv4: address >> 8) or /48 (IPv6: top 48 bits"
        " tagged with bit 48); -1 = missing",
    ),
    (
        "net_datacenter",
        "uint8",
        "in a datacenter/hosting range or a cloud provider's published customer range, or its"
        " ASN is a hosting ASN (incl. Vultr, Alibaba Cloud, M247, Fly.io)",
    ),
    (
        "net_cloud",
        "uint8",
        "in a cloud provider's published range (AWS, Google, Microsoft, Oracle,"
        " DigitalOcean, Linode, Vultr, Cloudflare) or a Vultr or Alibaba Cloud ASN",
    ),
    (
        "net_security_vendor",
        "uint8",
        "email security gateway: a mail-security vendor's ASN (Proofpoint, Mimecast, Barracuda,"
        " Symantec, Trend Micro, Sophos, Cisco, Forcepoint, Hornetsecurity) or published range"
        " (Microsoft Exchange Online/EOP, Cloudflare Email Security)",
    ),
    (
        "net_microsoft_eop",
        "uint8",
        "in Microsoft's Exchange Online and Exchange Online Protection (Defender Safe Links)"
        " ranges, IPv4 and IPv6",
    ),
    (
        "net_apple_relay",
        "uint8",
        "iCloud Private Relay egress (Apple Mail Privacy Protection prefetch)",
    ),
    ("net_google", "uint8", "in Google's published ranges (incl. Googlebot) or Google's ASN 15169"),
    (
        "net_google_mail_proxy",
        "uint8",
        "Google's own ASN 15169 and Google's own service ranges (goog.json less cloud.json),"
        " where the Gmail image proxy fetches from; never Google Cloud customer space",
    ),
    ("net_yahoo", "uint8", "a Yahoo Inc./Oath ASN (Yahoo Mail proxy)"),
    ("net_vpn", "uint8", "in a known VPN range"),
    ("net_crawler_range", "uint8", "in a search/AI crawler range (Googlebot, Bingbot, OpenAI)"),
    (
        "net_link_preview_range",
        "uint8",
        "in a link-preview fetcher's network (Meta, X/Twitter, Telegram)",
    ),
)


@dataclass(frozen=True)
class FlagSource:
    """Where a network flag comes from: network categories and/or vendor ASN groups (any of
    them sets it), then ``require`` (the address must also be in one of these categories) and
    ``exclude`` (never in any of these categories)."""

    networks: tuple[str, ...] = ()
    vendor_asns: tuple[str, ...] = ()
    datacenter_asns: bool = False
    require: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


# Cloud providers' published ranges where their customers' machines live.
_CLOUD_CUSTOMERS = ("amazon", "google_cloud", "oracle", "digitalocean", "linode", "vultr")

FLAG_SOURCES: dict[str, FlagSource] = {
    "net_datacenter": FlagSource(
        networks=("datacenter", *_CLOUD_CUSTOMERS),
        vendor_asns=("hosting",),
        datacenter_asns=True,
    ),
    "net_cloud": FlagSource(
        networks=(
            "amazon",
            "google",
            "microsoft",
            "oracle",
            "digitalocean",
            "linode",
            "vultr",
            "cloudflare",
        ),
        # Vultr's published list covers a tenth of its ASNs' space; Alibaba Cloud publishes none.
        vendor_asns=("alibaba_cloud", "vultr"),
    ),
    "net_security_vendor": FlagSource(
        networks=("microsoft_eop", "cloudflare_email_security"),
        vendor_asns=("proofpoint", "mimecast", "barracuda", "mail_security"),
    ),
    "net_microsoft_eop": FlagSource(networks=("microsoft_eop",)),
    "net_apple_relay": FlagSource(networks=("apple_proxy",)),
    "net_google": FlagSource(networks=("google", "googlebot"), vendor_asns=("google_mail",)),
    # The Gmail image proxy is Google's own service; a bot on Google Cloud must not look like it.
    "net_google_mail_proxy": FlagSource(
        vendor_asns=("google_mail",), require=("google_own",), exclude=("google_cloud",)
    ),
    "net_yahoo": FlagSource(vendor_asns=("yahoo",)),
    "net_vpn": FlagSource(networks=("vpn",)),
    "net_crawler_range": FlagSource(networks=("googlebot", "bing", "openai")),
    "net_link_preview_range": FlagSource(networks=("facebook", "twitter", "telegram")),
}
FLAG_NAMES: tuple[str, ...] = tuple(FLAG_SOURCES)
_FLAG_MASK = (1 << len(FLAG_NAMES)) - 1
assert len(FLAG_NAMES) <= 16, "flags are returned as uint16"

_pton = socket.inet_pton
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
MISSING_KEY = -1
_V6_TAG = np.int64(1 << 62)
_V6_PREFIX_TAG = np.int64(1 << 48)
_MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------- parsing


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic, fixed constants)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ipv6_key(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Stable int64 key of IPv6 addresses: a 62-bit hash of both halves with bit 62 set.

    IPv4 keys are below 2**32, so the tag bit keeps the two families apart; the value depends
    only on the address bits, never on Python's per-process hash seed.
    """
    h = _mix64(hi.astype(np.uint64) ^ _mix64(lo.astype(np.uint64)))
    return (h >> np.uint64(2)).astype(np.int64) | _V6_TAG


def to_s16(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """128-bit values (high, low uint64) as 16-byte big-endian strings, which sort numerically."""
    buf = np.empty((len(hi), 2), dtype=">u8")
    buf[:, 0] = hi
    buf[:, 1] = lo
    return buf.view("S16").ravel()


def _split128(values: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    vals = list(values)
    hi = np.fromiter((v >> 64 for v in vals), dtype=np.uint64, count=len(vals))
    lo = np.fromiter((v & _MASK64 for v in vals), dtype=np.uint64, count=len(vals))
    return hi, lo


_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def _packed(value: object) -> bytes:
    """Packed bytes of one address: 4 for IPv4, 16 for IPv6, empty when not an address.

    ``inet_pton`` is as strict as :mod:`ipaddress` (no leading zeros, four octets) and runs in C;
    the slower path handles surrounding whitespace, IPv6 zone ids and IPv4-mapped IPv6, which is
    the IPv4 address it carries because that is the requester's network.
    """
    try:
        # Any object is tried: inet_pton's TypeError on a non-str is the cheap "not text" test.
        return _pton(_AF_INET, value)  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError, UnicodeError):
        pass
    if not isinstance(value, str):
        return b""
    text = value.strip()
    try:
        packed = _pton(_AF_INET6, text)
    except (OSError, ValueError, UnicodeError):
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return b""
        packed = addr.packed
    if len(packed) == 16 and packed[:12] == _V4_MAPPED_PREFIX:
        return packed[12:]
    return packed


@dataclass
class ParsedIps:
    """Distinct addresses parsed: version (0/4/6), IPv4 integer, IPv6 halves."""

    version: np.ndarray  # int8
    v4: np.ndarray  # uint32, 0 where not IPv4
    v6_hi: np.ndarray  # uint64, 0 where not IPv6
    v6_lo: np.ndarray  # uint64


def parse_ips(values: Iterable[object]) -> ParsedIps:
    """Parse IP strings (non-strings and malformed values are invalid, version 0)."""
    packed = [_packed(v) for v in values]
    n = len(packed)
    sizes = np.fromiter(map(len, packed), dtype=np.int64, count=n)
    raw = np.frombuffer(b"".join(packed), dtype=np.uint8)
    offsets = np.cumsum(sizes) - sizes
    version = np.where(sizes == 4, 4, np.where(sizes == 16, 6, 0)).astype(np.int8)
    v4 = np.zeros(n, dtype=np.uint32)
    v6_hi = np.zeros(n, dtype=np.uint64)
    v6_lo = np.zeros(n, dtype=np.uint64)
    is4 = np.flatnonzero(sizes == 4)
    if is4.size:
        v4[is4] = raw[offsets[is4, None] + np.arange(4)].view(">u4").ravel()
    is6 = np.flatnonzero(sizes == 16)
    if is6.size:
        halves = raw[offsets[is6, None] + np.arange(16)].view(">u8")
        v6_hi[is6] = halves[:, 0]
        v6_lo[is6] = halves[:, 1]
    return ParsedIps(version=version, v4=v4, v6_hi=v6_hi, v6_lo=v6_lo)


# ---------------------------------------------------------------- range tables


def cidr_ranges(cidrs: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIDRs to inclusive ranges: (v4 starts, v4 ends) as int64, (v6 starts, v6 ends) as Python
    ints in object arrays (exact 128-bit). Host bits are cleared, as ``strict=False`` would."""
    addr_list: list[str] = []
    plen_list: list[str] = []
    for cidr in cidrs:
        addr, _, plen = cidr.strip().partition("/")
        addr_list.append(addr)
        plen_list.append(plen)
    addrs = np.array(addr_list, dtype=object)
    is6 = np.fromiter((":" in a for a in addr_list), dtype=bool, count=len(addr_list))
    try:
        plens = np.array(
            [int(p) if p else (128 if v6 else 32) for p, v6 in zip(plen_list, is6, strict=True)],
            dtype=np.int64,
        )
    except ValueError as exc:
        raise BotfilterError(f"bad CIDR prefix length in reference networks: {exc}") from exc

    v4_idx = np.flatnonzero(~is6)
    parsed = parse_ips(addrs[v4_idx])
    ok4, a4 = parsed.version == 4, parsed.v4
    p4 = plens[v4_idx]
    if not ok4.all() or ((p4 < 0) | (p4 > 32)).any():
        bad = addr_list[v4_idx[np.flatnonzero(~ok4 | (p4 < 0) | (p4 > 32))[0]]]
        raise BotfilterError(f"bad IPv4 CIDR in reference networks: {bad!r}")
    host = (np.int64(1) << (32 - p4)) - 1
    s4 = a4.astype(np.int64) & ~host
    e4 = s4 | host

    s6: list[int] = []
    e6: list[int] = []
    for i in np.flatnonzero(is6):
        try:
            # inet_pton: a fifth of the cost of ipaddress (21k IPv6 networks are vendored)
            value = int.from_bytes(_pton(_AF_INET6, addr_list[i]), "big")
        except (OSError, ValueError) as exc:
            raise BotfilterError(
                f"bad IPv6 CIDR in reference networks: {addr_list[i]!r} ({exc})"
            ) from exc
        plen6 = int(plens[i])
        if not 0 <= plen6 <= 128:
            raise BotfilterError(f"bad IPv6 prefix length in reference networks: /{plen6}")
        host6 = (1 << (128 - plen6)) - 1
        s6.append(value & ~host6)
        e6.append((value & ~host6) | host6)
    return s4, e4, np.array(s6, dtype=object), np.array(e6, dtype=object)


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of inclusive ranges (overlapping or adjacent ones joined), sorted by start."""
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1] + 1
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(s) - 1)
    return s[first], reach[last]


def flag_segments(
    ranges: dict[int, tuple[np.ndarray, np.ndarray]], space_end: int, dtype: type | str
) -> tuple[np.ndarray, np.ndarray]:
    """Elementary segments of overlapping flagged ranges: (segment starts, OR-ed flag bits).

    ``ranges`` maps a flag bit to its (starts, ends), ends inclusive. A query's segment is the
    last start <= the query. ``dtype`` is int64 for IPv4, object (Python ints) for exact IPv6.
    """
    merged: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pieces = [np.array([0], dtype=dtype)]
    for bit, (starts, ends) in ranges.items():
        if len(starts) == 0:
            continue
        ms, me = _merge(np.asarray(starts, dtype=dtype), np.asarray(ends, dtype=dtype))
        merged[bit] = (ms, me)
        pieces += [ms, me[me < space_end] + 1]
    bounds = np.unique(np.concatenate(pieces))
    flags = np.zeros(len(bounds), dtype=np.int64)
    for bit, (ms, me) in merged.items():
        idx = np.searchsorted(ms, bounds, side="right") - 1
        inside = idx >= 0
        inside[inside] = bounds[inside] <= me[idx[inside]]
        flags |= np.where(inside, bit, 0)
    change = np.ones(len(bounds), dtype=bool)
    change[1:] = flags[1:] != flags[:-1]
    return bounds[change], flags[change]


def _range_value(
    starts: np.ndarray, ends: np.ndarray | None, values: np.ndarray, q: np.ndarray
) -> np.ndarray:
    """Value of the range holding each query (0 if none); ``ends`` None: segments, no gaps."""
    if starts.size == 0:
        return np.zeros(len(q), dtype=values.dtype)
    idx = np.searchsorted(starts, q, side="right") - 1
    safe = idx.clip(0)
    hit = idx >= 0
    if ends is not None:
        hit &= q <= ends[safe]
    return np.where(hit, values[safe], 0).astype(values.dtype)


def _in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if sorted_set.size == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_set, values).clip(0, sorted_set.size - 1)
    return sorted_set[pos] == values


def distinct(values: pd.Series | np.ndarray | Coded) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct values) of a column, code -1 for missing; a categorical or
    :class:`~features.coded.Coded` column is used as is."""
    if isinstance(values, Coded):
        return values.codes, values.uniques()
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), values.cat.categories.to_numpy(dtype=object)
    array = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values)
    codes, uniques = pd.factorize(array, use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)


class IpEnricher:
    """IP -> version, ASN, stable keys and network flags, from the vendored :class:`Reference`."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        ref = reference
        cidr_cache: dict[str, tuple[np.ndarray, ...]] = {}
        r4: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        r6: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # ASN-derived bits: a sorted array of ASNs per bit, applied per event (the event's own
        # asn can differ from the looked-up one).
        self._asn_bits: list[tuple[int, np.ndarray]] = []
        # (flag bit, required-range bit or 0, excluded-range bit or 0): the require/exclude
        # ranges get helper bits above the flags' own, applied after ASN bits are OR-ed in.
        self._gates: list[tuple[int, int, int]] = []
        helper = len(FLAG_SOURCES)

        def add_ranges(bit: int, categories: tuple[str, ...]) -> None:
            parts: list[tuple[np.ndarray, ...]] = []
            for category in categories:
                if category not in ref.networks:
                    raise BotfilterError(f"reference data lacks network category {category!r}")
                if category not in cidr_cache:
                    cidr_cache[category] = cidr_ranges(ref.networks[category])
                parts.append(cidr_cache[category])
            if parts:
                r4[bit] = (
                    np.concatenate([p[0] for p in parts]),
                    np.concatenate([p[1] for p in parts]),
                )
                r6[bit] = (
                    np.concatenate([p[2] for p in parts]),
                    np.concatenate([p[3] for p in parts]),
                )

        for i, source in enumerate(FLAG_SOURCES.values()):
            bit = 1 << i
            add_ranges(bit, source.networks)
            gate = [bit, 0, 0]
            for slot, categories in ((1, source.require), (2, source.exclude)):
                if categories:
                    gate[slot] = 1 << helper
                    helper += 1
                    add_ranges(gate[slot], categories)
            if gate[1] or gate[2]:
                self._gates.append((gate[0], gate[1], gate[2]))
            asns: set[int] = set()
            for group in source.vendor_asns:
                if group not in ref.vendor_asns:
                    raise BotfilterError(f"reference data lacks vendor ASN group {group!r}")
                asns.update(ref.vendor_asns[group])
            if source.datacenter_asns:
                asns.update(ref.datacenter_asns)
            if asns:
                self._asn_bits.append((bit, np.array(sorted(asns), dtype=np.int64)))
        flag4_start, flag4 = flag_segments(r4, (1 << 32) - 1, np.int64)
        flag6_start, flag6 = flag_segments(r6, (1 << 128) - 1, object)
        # family -> (ASN range starts, ends, ASNs, flag segment starts, flags); IPv6 values are
        # 16-byte big-endian strings, which numpy compares in numeric order.
        self._tables = {
            4: (
                ref.ipv4_start.astype(np.int64),
                ref.ipv4_end.astype(np.int64),
                ref.ipv4_asn.astype(np.int64),
                flag4_start,
                flag4.astype(np.uint64),
            ),
            6: (
                to_s16(ref.ipv6_start_hi, ref.ipv6_start_lo),
                to_s16(ref.ipv6_end_hi, ref.ipv6_end_lo),
                ref.ipv6_asn.astype(np.int64),
                to_s16(*_split128(flag6_start)),
                flag6.astype(np.uint64),
            ),
        }

    # -- lookups on distinct parsed addresses ------------------------------------------------

    def _lookup(self, family: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ASN, range flags) of sorted-comparable addresses (int64 for v4, S16 for v6)."""
        starts, ends, asns, flag_starts, flags = self._tables[family]
        return _range_value(starts, ends, asns, q), _range_value(flag_starts, None, flags, q)

    def _asn_flags(self, asn: np.ndarray) -> np.ndarray:
        flags = np.zeros(len(asn), dtype=np.uint64)
        for bit, members in self._asn_bits:
            flags[_in_sorted(asn, members)] |= np.uint64(bit)
        return flags

    def _gate_mask(self, range_flags: np.ndarray) -> np.ndarray:
        """Per address, the flags it may carry (uint16): a gated flag is cleared where its
        required ranges miss or its excluded ranges hit. Depends on the address only."""
        mask = np.full(len(range_flags), _FLAG_MASK, dtype=np.uint16)
        for bit, required, excluded in self._gates:
            off = np.zeros(len(range_flags), dtype=bool)
            if required:
                off |= (range_flags & np.uint64(required)) == 0
            if excluded:
                off |= (range_flags & np.uint64(excluded)) != 0
            mask[off] &= np.uint16(~bit & _FLAG_MASK)
        return mask

    # -- public --------------------------------------------------------------------------------

    def enrich(
        self, ips: pd.Series | np.ndarray | Coded, asn: pd.Series | np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Enrich IP strings (and optional ingestion-resolved ASNs) into the IP_FEATURES columns.

        A given asn (a positive integer) wins over the lookup; missing, non-numeric or
        non-positive values fall back to the lookup. Missing or invalid IPs get version 0,
        keys -1 and no range flags.
        """
        codes, uniques = distinct(ips)
        n = len(codes)
        parsed = parse_ips(uniques)
        m = len(uniques)
        # One extra trailing slot for missing values: factorize's -1 code indexes it.
        u_version = np.append(parsed.version, np.int8(0))
        u_asn = np.zeros(m + 1, dtype=np.int64)
        u_flags = np.zeros(m + 1, dtype=np.uint64)
        u_key = np.full(m + 1, MISSING_KEY, dtype=np.int64)
        u_prefix = np.full(m + 1, MISSING_KEY, dtype=np.int64)

        is4 = np.flatnonzero(parsed.version == 4)
        if is4.size:
            v4 = parsed.v4[is4]
            u_asn[is4], u_flags[is4] = self._lookup(4, v4.astype(np.int64))
            u_key[is4] = v4.astype(np.int64)
            u_prefix[is4] = (v4 >> np.uint32(8)).astype(np.int64)
        is6 = np.flatnonzero(parsed.version == 6)
        if is6.size:
            hi, lo = parsed.v6_hi[is6], parsed.v6_lo[is6]
            u_asn[is6], u_flags[is6] = self._lookup(6, to_s16(hi, lo))
            u_key[is6] = ipv6_key(hi, lo)
            u_prefix[is6] = (hi >> np.uint64(16)).astype(np.int64) | _V6_PREFIX_TAG

        if asn is None:
            # ASN flags depend on the address only: compute them on the distinct addresses.
            event_asn = u_asn[codes]
            both = u_flags | self._asn_flags(u_asn)
            flags = ((both & np.uint64(_FLAG_MASK)).astype(np.uint16) & self._gate_mask(u_flags))[
                codes
            ]
        else:
            if isinstance(asn, np.ndarray) and asn.dtype.kind in "fiu":
                given_arr = asn.astype(np.float64)  # numeric already (the online API's)
            else:
                given = pd.to_numeric(
                    asn if isinstance(asn, pd.Series) else pd.Series(asn), errors="coerce"
                )
                given_arr = given.to_numpy(dtype="float64", na_value=np.nan)
            if len(given_arr) != n:
                raise BotfilterError(f"asn has {len(given_arr)} values for {n} IPs")
            with np.errstate(invalid="ignore"):
                use = (given_arr > 0) & (given_arr < 2**32) & (given_arr == np.floor(given_arr))
            event_asn = np.where(use, np.nan_to_num(given_arr).astype(np.int64), u_asn[codes])
            # The event's own asn can differ per row: ASN flags on the distinct final ASNs.
            a_codes, a_uniques = pd.factorize(event_asn)
            asn_flags = self._asn_flags(np.asarray(a_uniques, dtype=np.int64))
            # Flags' own bits only (uint16: a quarter of the memory traffic per row), then the
            # address-only gates, all gathered from the distinct values.
            u16 = (u_flags & np.uint64(_FLAG_MASK)).astype(np.uint16)
            a16 = (asn_flags & np.uint64(_FLAG_MASK)).astype(np.uint16)
            flags = (u16[codes] | a16[a_codes]) & self._gate_mask(u_flags)[codes]

        out: dict[str, np.ndarray] = {
            "ip_version": u_version[codes],
            "asn": event_asn,
            "ip_key": u_key[codes],
            "prefix_key": u_prefix[codes],
        }
        for i, name in enumerate(FLAG_NAMES):
            out[name] = ((flags >> i) & 1).astype(np.uint8)
        return out
