"""Build the compact vendored enrichment data from the public source files.

Source layout (``--source DIR``)::

    ipranges/<provider>/ipv4_merged.txt, ipv6_merged.txt   CC0 1.0 (lord-alfred/ipranges)
    datacenter/datacenter_asn.txt, datacenter_ipv4.txt, datacenter_ipv6.txt, vpn_ipv4.txt  MIT
    asn/asn-ipv4-num.csv.gz, asn-ipv6.csv.gz               CC BY 4.0 (RouteViews, DB-IP, NRO)
    user-agents/user-agents.json.gz                        BSD-2-Clause (intoli/user-agents)

Curated lists kept in this repository (``--curated DIR``, default ``features/enrichment/sources``;
facts each cited in its folder's SOURCE.txt, see its README.md)::

    microsoft-exchange/ranges.txt         Exchange Online and EOP ranges (category microsoft_eop)
    google/goog.txt, cloud.txt            Google's own ranges less Google Cloud customer ranges
                                          (google_own) and the customer ranges (google_cloud)
    cloudflare-email-security/ranges.txt  Cloudflare Email Security egress (cloudflare_email_security)
    asn-groups/<name>.txt                 "group AS1 AS2 # org" lines: vendor ASN groups, and
                                          <name> as the union of the file's groups

Each folder also holds its ``SOURCE.txt`` and licence files, which are copied next to the data.
The output is deterministic: the same input gives the same bytes (fixed zip/gzip timestamps,
sorted keys), so a rebuild from unchanged sources leaves ``git status`` clean.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from core.errors import BotfilterError
from core.redact import one_line

DATA_DIR = Path(__file__).resolve().parent / "data"
CURATED_DIR = Path(__file__).resolve().parent / "sources"

ASN_FILE = "asn.npz"
ORGS_FILE = "asn_orgs.json.gz"
NETWORKS_FILE = "networks.json.gz"
USER_AGENTS_FILE = "user_agents.json.gz"
ATTRIBUTION_FILE = "ATTRIBUTION.md"

# Provider folder in ipranges/ -> category name in Reference.networks.
PROVIDERS: dict[str, str] = {
    "amazon": "amazon",
    "apple-proxy": "apple_proxy",
    "bing": "bing",
    "cloudflare": "cloudflare",
    "digitalocean": "digitalocean",
    "facebook": "facebook",
    "google": "google",
    "googlebot": "googlebot",
    "linode": "linode",
    "microsoft": "microsoft",
    "openai": "openai",
    "oracle": "oracle",
    "telegram": "telegram",
    "twitter": "twitter",
    "vultr": "vultr",
}

# Curated range lists (folder/file in the curated directory) -> category. Microsoft's Exchange
# Online and EOP ranges are where Defender Safe Links and EOP scanners fetch from; the ipranges
# list has Microsoft only as a whole, so the subset is listed and checked against it.
CURATED_NETWORKS: dict[str, str] = {
    "microsoft-exchange/ranges.txt": "microsoft_eop",
    "cloudflare-email-security/ranges.txt": "cloudflare_email_security",
    "google/cloud.txt": "google_cloud",
}
GOOGLE_ALL = "google/goog.txt"
ASN_GROUP_DIR = "asn-groups"

# Security-gateway and mailbox-provider ASNs are selected by organisation name in the ASN table,
# so a newer table picks up new ASNs of the same organisation.
VENDOR_ORG_PATTERNS: dict[str, str] = {
    "proofpoint": r"^proofpoint\b",
    "mimecast": r"^mimecast\b",
    "barracuda": r"^barracuda networks\b",
    # Yahoo Mail runs on Yahoo Inc. / Oath Holdings ASNs; Yahoo! JAPAN (LY Corp) is another company.
    "yahoo": r"^(?!.*(japan|tokyo))(yahoo|oath holdings)",
}
# Fixed ASNs, checked against the organisation name found in the table.
FIXED_VENDOR_ASNS: dict[str, tuple[tuple[int, ...], str]] = {
    "google_mail": ((15169,), r"^google\b"),
    "microsoft": ((8075,), r"^microsoft\b"),
}

LICENCE_FILES: dict[str, tuple[str, ...]] = {
    "ipranges": ("LICENSE",),
    "datacenter": ("LICENSE",),
    "asn": ("DBIP-LICENSE", "NRO_LICENSE", "ROUTEVIEWS-LICENSE", "MODIFICATIONS"),
    "user-agents": ("LICENSE",),
}
# Licence files of the curated folder -> their name next to the data.
CURATED_LICENCES: dict[str, str] = {
    "LICENSE-CC0.txt": "LICENSE-curated.txt",
    "google/LICENSE-googerteller.txt": "LICENSE-curated-google.txt",
}

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_U64 = (1 << 64) - 1

Step = Callable[[str], None]


@dataclass
class VendorSummary:
    """What a vendor build wrote and what it had to fix up in the source."""

    out_dir: Path
    files: dict[str, int] = field(default_factory=dict)  # file name -> bytes
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Size of all written files together."""
        return sum(self.files.values())


# ---------------------------------------------------------------- deterministic writers


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as a compressed .npz with fixed timestamps (np.savez stamps the clock)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            array = np.ascontiguousarray(arrays[name])
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    path.write_bytes(buf.getvalue())


def write_json_gz(path: Path, obj: object) -> None:
    """Write compact, key-sorted JSON gzip-compressed with mtime 0 and no embedded file name."""
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    path.write_bytes(buf.getvalue())


def read_json_gz(path: Path) -> Any:
    """Read a file written by :func:`write_json_gz` (or any gzip JSON)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


# ---------------------------------------------------------------- source readers


def _require(path: Path) -> Path:
    if not path.is_file():
        raise BotfilterError(f"vendor source file missing: {path}")
    return path


def read_cidrs(path: Path, optional: bool = False) -> list[str]:
    """CIDR lines of a list file (blank lines and ``#`` comments skipped), validated."""
    if optional and not path.exists():
        return []
    out: list[str] = []
    for lineno, line in enumerate(_require(path).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise BotfilterError(f"{path}:{lineno}: not a CIDR: {text!r}") from exc
        out.append(text)
    return out


MAX_ASN = 0xFFFFFFFF  # 32-bit AS numbers: a larger one broke every enrichment at load


def read_datacenter_asns(path: Path) -> list[int]:
    """ASNs of lines like ``AS45090 # Tencent cloud``, sorted and unique."""
    asns: set[int] = set()
    for lineno, line in enumerate(_require(path).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = re.fullmatch(r"(?i)AS(\d+)", text)
        if match is None or int(match.group(1)) > MAX_ASN:
            raise BotfilterError(f"{path}:{lineno}: not an ASN: {text!r}")
        asns.add(int(match.group(1)))
    return sorted(asns)


def _read_asn_csv(path: Path) -> pd.DataFrame:
    """An ASN table: ``start,end,asn,org`` rows. One that is not gzip, cut short, empty or of
    fewer columns is refused: written out, it left every address without its ASN (and so
    without the Gmail-proxy, mail-security and hosting flags), with exit 0."""
    try:
        frame = pd.read_csv(
            _require(path), header=None, dtype=str, keep_default_na=False, na_filter=False
        )
    except pd.errors.EmptyDataError:
        raise BotfilterError(f"{path}: the ASN table has no rows") from None
    except (ValueError, pd.errors.ParserError, OSError, EOFError) as exc:
        # (a truncated gzip is EOFError; not gzip at all, gzip.BadGzipFile, an OSError)
        raise BotfilterError(f"{path}: cannot read ASN table: {one_line(exc)}") from exc
    if frame.shape[1] != 4:
        raise BotfilterError(f"{path}:1: expected start,end,asn,org")
    frame.columns = ["start", "end", "asn", "org"]
    try:
        frame["asn"] = frame["asn"].astype("int64")
    except (ValueError, OverflowError) as exc:
        raise BotfilterError(f"{path}: cannot read ASN table: {one_line(exc)}") from exc
    return frame


def _sorted_ranges(
    frame: pd.DataFrame, parse: Callable[[str], int], label: str, warnings: list[str]
) -> tuple[list[int], list[int], list[int]]:
    """Row order, starts and ends of the ranges sorted by start, with overlaps resolved.

    The ASN table is sorted by start; the rare overlap comes from merging several registries, and
    the later, more specific start wins: the earlier range is clipped where the next one starts (a
    range left empty is dropped). What had to be changed is reported, never silent.
    """
    try:
        starts = [parse(x) for x in frame["start"]]
        ends = [parse(x) for x in frame["end"]]
    except ValueError as exc:
        raise BotfilterError(f"{label}: bad address: {exc}") from exc
    if any(e < s for s, e in zip(starts, ends, strict=True)):
        raise BotfilterError(f"{label}: a range ends before it starts")
    order = sorted(range(len(starts)), key=lambda i: (starts[i], ends[i]))
    starts = [starts[i] for i in order]
    ends = [ends[i] for i in order]
    clipped = tails = 0
    for i in range(len(starts) - 1):
        if ends[i] >= starts[i + 1]:
            clipped += 1
            tails += ends[i] > ends[i + 1]
            ends[i] = starts[i + 1] - 1
    keep = [i for i in range(len(starts)) if ends[i] >= starts[i]]
    if clipped:
        warnings.append(
            f"{label}: {clipped} overlapping range(s) clipped at the next start, "
            f"{len(starts) - len(keep)} left empty and dropped, "
            f"{tails} lost a tail reaching past the next range"
        )
    return [order[i] for i in keep], [starts[i] for i in keep], [ends[i] for i in keep]


def _parse_ipv6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def build_asn_tables(source: Path, warnings: list[str], step: Step) -> tuple[dict, list[str]]:
    """Read both ASN CSVs into sorted, non-overlapping integer range arrays plus org names."""
    v4 = _read_asn_csv(source / "asn" / "asn-ipv4-num.csv.gz")
    step("read IPv4 ASN table")
    v6 = _read_asn_csv(source / "asn" / "asn-ipv6.csv.gz")
    step("read IPv6 ASN table")

    orgs = sorted(set(v4["org"]).union(v6["org"]) - {""})
    org_index = {name: i for i, name in enumerate(orgs)}

    def org_codes(frame: pd.DataFrame) -> np.ndarray:
        return np.array([org_index.get(o, -1) for o in frame["org"]], dtype=np.int32)

    order4, s4, e4 = _sorted_ranges(v4, int, "asn-ipv4", warnings)
    order6, s6, e6 = _sorted_ranges(v6, _parse_ipv6, "asn-ipv6", warnings)
    if s4 and (s4[0] < 0 or e4[-1] > 0xFFFFFFFF):
        raise BotfilterError("asn-ipv4: address outside the IPv4 space")
    for label, frame in (("asn-ipv4", v4), ("asn-ipv6", v6)):
        if len(frame) and not frame["asn"].between(0, 0xFFFFFFFF).all():
            raise BotfilterError(f"{label}: ASN outside 0..4294967295")
    step("sorted ranges")

    start4 = np.array(s4, dtype=np.uint32)
    len4 = np.array(e4, dtype=np.uint32) - start4
    start6 = np.array(s6, dtype=object)
    end6 = np.array(e6, dtype=object)
    arrays = {
        # Deltas of starts and range lengths compress far better than absolute addresses.
        "ipv4_start_delta": np.diff(start4, prepend=np.uint32(0)).astype(np.uint32),
        "ipv4_length": len4.astype(np.uint32),
        "ipv4_asn": v4["asn"].to_numpy()[order4].astype(np.uint32),
        "ipv4_org": org_codes(v4)[order4],
        "ipv6_start_hi": (start6 >> 64).astype(np.uint64),
        "ipv6_start_lo": (start6 & _U64).astype(np.uint64),
        "ipv6_end_hi": (end6 >> 64).astype(np.uint64),
        "ipv6_end_lo": (end6 & _U64).astype(np.uint64),
        "ipv6_asn": v6["asn"].to_numpy()[order6].astype(np.uint32),
        "ipv6_org": org_codes(v6)[order6],
    }
    return arrays, orgs


def pack_asn_arrays(arrays: dict[str, np.ndarray], warnings: list[str]) -> dict[str, np.ndarray]:
    """Replace the per-range org codes by one ASN -> org map (an ASN has one registered org).

    The per-range codes are the largest part of the file otherwise. An ASN seen with several
    org names (none in the current table) keeps the name of most of its ranges, with a warning.
    """
    asn = np.concatenate([arrays["ipv4_asn"], arrays["ipv6_asn"]]).astype(np.int64)
    org = np.concatenate([arrays["ipv4_org"], arrays["ipv6_org"]]).astype(np.int64)
    pairs, counts = np.unique(np.stack([asn, org], axis=1), axis=0, return_counts=True)
    # For each ASN keep the org with the most ranges (ties: lowest org code), deterministically.
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    conflicted = int(len(pairs) - first.sum())
    if conflicted:
        warnings.append(f"asn: {conflicted} extra org name(s) of ASNs with several names dropped")
    packed = {k: v for k, v in arrays.items() if not k.endswith("_org")}
    packed["org_asn"] = pairs[first, 0].astype(np.uint32)
    packed["org_index"] = pairs[first, 1].astype(np.int32)
    return packed


def read_asn_groups(path: Path) -> dict[str, list[int]]:
    """Groups of a curated ASN file: lines ``group AS1 AS2 ... # comment``, in file order."""
    groups: dict[str, list[int]] = {}
    for lineno, line in enumerate(_require(path).read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        name, asns = fields[0], fields[1:]
        bad = [a for a in asns if re.fullmatch(r"(?i)AS\d+", a) is None or int(a[2:]) > MAX_ASN]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or not asns or bad:
            raise BotfilterError(f"{path}:{lineno}: expected 'group AS1 AS2 ...', got {line!r}")
        if name in groups:
            raise BotfilterError(f"{path}:{lineno}: group {name!r} listed twice")
        groups[name] = sorted({int(a[2:]) for a in asns})
    return groups


def curated_asn_groups(curated: Path) -> dict[str, list[int]]:
    """Every curated ASN group, plus one group per file (its stem) with the union of its groups."""
    base = curated / ASN_GROUP_DIR
    if not base.is_dir():
        raise BotfilterError(f"curated source folder missing: {base}")
    out: dict[str, list[int]] = {}
    for path in sorted(p for p in base.glob("*.txt") if p.name != "SOURCE.txt"):
        groups = read_asn_groups(path)
        clash = sorted((set(groups) | {path.stem}) & set(out))
        if clash:
            raise BotfilterError(f"{path}: ASN group(s) {clash} already defined elsewhere")
        out.update(groups)
        out[path.stem] = sorted({a for asns in groups.values() for a in asns})
    return out


def find_vendor_asns(
    arrays: dict, orgs: list[str], warnings: list[str], curated: dict[str, list[int]] | None = None
) -> dict[str, list[int]]:
    """Vendor -> ASNs, by organisation-name pattern over the ASN table (fixed ASNs verified),
    plus the curated groups (an ASN absent from the table is reported)."""
    asn_org: dict[int, str] = {}
    for fam in ("ipv4", "ipv6"):
        pairs = zip(arrays[f"{fam}_asn"].tolist(), arrays[f"{fam}_org"].tolist(), strict=True)
        for asn, org in pairs:
            if org >= 0:
                asn_org.setdefault(asn, orgs[org])
    result: dict[str, list[int]] = {}
    for vendor, pattern in VENDOR_ORG_PATTERNS.items():
        regex = re.compile(pattern, re.IGNORECASE)
        found = sorted(asn for asn, org in asn_org.items() if regex.search(org))
        if not found:
            warnings.append(f"no ASN found for {vendor} (org pattern {pattern!r})")
        result[vendor] = found
    for vendor, (asns, pattern) in FIXED_VENDOR_ASNS.items():
        for asn in asns:
            org = asn_org.get(asn, "")
            if not re.search(pattern, org, re.IGNORECASE):
                warnings.append(f"{vendor}: ASN {asn} is {org!r}, expected {pattern!r}")
        result[vendor] = list(asns)
    for group, members in (curated or {}).items():
        if group in result:
            raise BotfilterError(f"curated ASN group {group!r} clashes with a built-in group")
        missing = [a for a in members if a not in asn_org]
        if missing:
            warnings.append(f"{group}: ASN(s) {missing} not in the ASN table")
        result[group] = list(members)
    return result


# One address family at a time: ipaddress cannot collapse or compare IPv4 with IPv6 networks.
_Net = TypeVar("_Net", ipaddress.IPv4Network, ipaddress.IPv6Network)
_AnyNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def _subtract(keep: list[_Net], cut: list[_Net]) -> list[_Net]:
    """The networks covering ``keep`` less every address in ``cut`` (one family), sorted."""
    pieces = list(ipaddress.collapse_addresses(keep))
    for hole in ipaddress.collapse_addresses(cut):
        nxt: list[_Net] = []
        for net in pieces:
            if hole.subnet_of(net):
                nxt.extend(net.address_exclude(hole))
            elif not net.subnet_of(hole):
                nxt.append(net)
        pieces = nxt
    return list(ipaddress.collapse_addresses(pieces))


def subtract_cidrs(cidrs: Iterable[str], minus: Iterable[str]) -> list[str]:
    """The CIDRs covering ``cidrs`` less every address in ``minus`` (both families), sorted."""
    keep = [ipaddress.ip_network(c) for c in cidrs]
    cut = [ipaddress.ip_network(c) for c in minus]
    v4 = _subtract(
        [n for n in keep if isinstance(n, ipaddress.IPv4Network)],
        [n for n in cut if isinstance(n, ipaddress.IPv4Network)],
    )
    v6 = _subtract(
        [n for n in keep if isinstance(n, ipaddress.IPv6Network)],
        [n for n in cut if isinstance(n, ipaddress.IPv6Network)],
    )
    return [str(n) for n in (*v4, *v6)]


def _subnet_of(net: _AnyNet, other: _AnyNet) -> bool:
    """Whether ``net`` lies inside ``other`` (never across address families)."""
    if isinstance(net, ipaddress.IPv4Network) and isinstance(other, ipaddress.IPv4Network):
        return net.subnet_of(other)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(other, ipaddress.IPv6Network):
        return net.subnet_of(other)
    return False


def build_networks(
    source: Path, warnings: list[str], step: Step, curated: Path = CURATED_DIR
) -> dict[str, list[str]]:
    """Category -> CIDR strings from ipranges/ and datacenter/, plus the curated lists."""
    networks: dict[str, list[str]] = {}
    for folder, category in PROVIDERS.items():
        base = source / "ipranges" / folder
        if not base.is_dir():
            raise BotfilterError(f"vendor source folder missing: {base}")
        v4 = read_cidrs(base / "ipv4_merged.txt", optional=True)
        v6 = read_cidrs(base / "ipv6_merged.txt", optional=True)
        if not v4 and not v6:
            raise BotfilterError(f"{base}: neither ipv4_merged.txt nor ipv6_merged.txt has ranges")
        networks[category] = v4 + v6
    step("read provider ranges")
    dc = source / "datacenter"
    networks["datacenter"] = read_cidrs(dc / "datacenter_ipv4.txt") + read_cidrs(
        dc / "datacenter_ipv6.txt", optional=True
    )
    networks["vpn"] = read_cidrs(dc / "vpn_ipv4.txt")
    step("read datacenter and VPN ranges")

    for rel, category in CURATED_NETWORKS.items():
        networks[category] = read_cidrs(curated / rel)
    # Google's own services: all of Google less its cloud customers' ranges (Google's advice).
    networks["google_own"] = subtract_cidrs(
        read_cidrs(curated / GOOGLE_ALL), networks["google_cloud"]
    )
    step("read curated ranges")

    microsoft = [ipaddress.ip_network(c, strict=False) for c in networks["microsoft"]]
    for cidr in networks["microsoft_eop"]:
        net = ipaddress.ip_network(cidr, strict=False)
        if not any(_subnet_of(net, m) for m in microsoft):
            warnings.append(f"Microsoft EOP range {cidr} is not inside the ipranges/microsoft list")
    return networks


def build_user_agents(source: Path) -> dict[str, list]:
    """The weighted real-browser User-Agent list as columns (source order kept)."""
    path = _require(source / "user-agents" / "user-agents.json.gz")
    try:
        records = read_json_gz(path)
    except (OSError, ValueError) as exc:
        raise BotfilterError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(records, list) or not records:
        raise BotfilterError(f"{path}: expected a non-empty JSON list of records")
    cols: dict[str, list] = {"user_agent": [], "weight": [], "device_category": []}
    for i, rec in enumerate(records):
        try:
            cols["user_agent"].append(str(rec["userAgent"]))
            cols["weight"].append(float(rec["weight"]))
            cols["device_category"].append(str(rec.get("deviceCategory") or "unknown"))
        except (KeyError, TypeError, ValueError) as exc:
            raise BotfilterError(f"{path}: record {i} lacks userAgent/weight: {exc}") from exc
    return cols


def _first_line(path: Path) -> str:
    return _require(path).read_text().strip()


def attribution_text(source: Path, curated: Path = CURATED_DIR) -> str:
    """ATTRIBUTION.md naming each source, its version (from SOURCE.txt) and its licence."""
    parts = [
        "# Vendored enrichment data: sources and attribution",
        "",
        "Built by `botfilter vendor` (features/enrichment/vendor.py) from the sources below.",
        "The licence texts are kept next to the data as LICENSE-*.txt.",
        "",
        "## IP to ASN (asn.npz, asn_orgs.json.gz) — CC BY 4.0",
        "",
        _first_line(source / "asn" / "SOURCE.txt"),
        "",
        "Attribution (required by CC BY 4.0): IP to ASN data by RouteViews (routeviews.org),",
        "DB-IP (<a href='https://db-ip.com'>IP Geolocation by DB-IP</a>, db-ip.com) and the",
        "Number Resource Organization (nro.net), as packaged by ip-location-db.",
        "Modifications: ranges re-encoded as sorted integer arrays (start deltas and lengths);",
        "the rare overlapping range is clipped at the start of the next one.",
        "Licences: LICENSE-asn-DBIP.txt, LICENSE-asn-NRO.txt, LICENSE-asn-ROUTEVIEWS.txt,",
        "LICENSE-asn-MODIFICATIONS.txt.",
        "",
        "## Provider IP ranges (networks.json.gz) — CC0 1.0",
        "",
        _first_line(source / "ipranges" / "SOURCE.txt"),
        "",
        "Licence: LICENSE-ipranges.txt.",
        "",
        "## Curated ranges and ASN groups (networks.json.gz) — facts, CC0 1.0 arrangement",
        "",
        "Kept in features/enrichment/sources/; each folder's SOURCE.txt cites where its lines",
        "come from. Licences: LICENSE-curated.txt (CC0 1.0), LICENSE-curated-google.txt (MIT,",
        "the repository the Google lists were taken from).",
        "",
        *(
            f"- {folder}: {_first_line(curated / folder / 'SOURCE.txt')}"
            for folder in (
                "microsoft-exchange",
                "google",
                "cloudflare-email-security",
                ASN_GROUP_DIR,
            )
        ),
        "",
        "## Datacenter ASNs, datacenter and VPN ranges (networks.json.gz) — MIT",
        "",
        _first_line(source / "datacenter" / "SOURCE.txt"),
        "",
        "Licence: LICENSE-datacenter.txt.",
        "",
        "## Real-browser User-Agents (user_agents.json.gz) — BSD-2-Clause",
        "",
        _first_line(source / "user-agents" / "SOURCE.txt"),
        "",
        "Only userAgent, weight and deviceCategory are kept. Licence: LICENSE-user-agents.txt.",
        "",
    ]
    return "\n".join(parts)


def licence_copies(source: Path, curated: Path = CURATED_DIR) -> dict[str, bytes]:
    """Output file name -> licence text bytes, for every licence of every source."""
    out: dict[str, bytes] = {
        target: _require(curated / name).read_bytes() for name, target in CURATED_LICENCES.items()
    }
    for folder, names in LICENCE_FILES.items():
        for name in names:
            if folder == "asn":
                target = "LICENSE-asn-" + name.replace("-LICENSE", "").replace("_LICENSE", "")
            else:
                target = f"LICENSE-{folder}"
            out[f"{target}.txt"] = _require(source / folder / name).read_bytes()
    return out


def vendored_file_names() -> tuple[str, ...]:
    """Every file the vendor build writes (and nothing else lives in the data folder)."""
    lic = ("LICENSE-ipranges.txt", "LICENSE-datacenter.txt", "LICENSE-user-agents.txt") + tuple(
        f"LICENSE-asn-{n}.txt" for n in ("DBIP", "NRO", "ROUTEVIEWS", "MODIFICATIONS")
    )
    lic += tuple(CURATED_LICENCES.values())
    return (ASN_FILE, ORGS_FILE, NETWORKS_FILE, USER_AGENTS_FILE, ATTRIBUTION_FILE, *lic)


def build_vendored_data(
    source: Path,
    out_dir: Path = DATA_DIR,
    show_progress: bool = True,
    curated: Path = CURATED_DIR,
) -> VendorSummary:
    """Rebuild every vendored file in ``out_dir`` from ``source`` and the ``curated`` lists."""
    # Imported here only: every enriching command imports this module for its file names, and
    # only `botfilter vendor` shows progress (rich.progress: 0.1 s, -X importtime).
    from rich.progress import Progress

    source = Path(source)
    if not source.is_dir():
        raise BotfilterError(f"vendor source folder not found: {source}")
    for folder in ("ipranges", "datacenter", "asn", "user-agents"):
        if not (source / folder).is_dir():
            raise BotfilterError(f"vendor source folder missing: {source / folder}")
    curated = Path(curated)
    if not curated.is_dir():
        raise BotfilterError(f"curated source folder not found: {curated}")
    summary = VendorSummary(out_dir=Path(out_dir))
    warnings = summary.warnings
    steps = 10
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("vendor", total=steps)

        def step(label: str) -> None:
            progress.update(task, advance=1, description=label)

        attribution = attribution_text(source, curated)
        licences = licence_copies(source, curated)
        step("read licences")
        arrays, orgs = build_asn_tables(source, warnings, step)
        networks = build_networks(source, warnings, step, curated)
        dc_asns = read_datacenter_asns(source / "datacenter" / "datacenter_asn.txt")
        vendor_asns = find_vendor_asns(arrays, orgs, warnings, curated_asn_groups(curated))
        step("matched vendor ASNs")
        user_agents = build_user_agents(source)
        step("read user agents")

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_npz(out / ASN_FILE, pack_asn_arrays(arrays, warnings))
        write_json_gz(out / ORGS_FILE, orgs)
        write_json_gz(
            out / NETWORKS_FILE,
            {"networks": networks, "datacenter_asns": dc_asns, "vendor_asns": vendor_asns},
        )
        write_json_gz(out / USER_AGENTS_FILE, user_agents)
        (out / ATTRIBUTION_FILE).write_text(attribution)
        for name, data in licences.items():
            (out / name).write_bytes(data)
        step("wrote files")

    for name in vendored_file_names():
        summary.files[name] = (out / name).stat().st_size
    summary.counts = {
        "ipv4_asn_ranges": int(arrays["ipv4_asn"].size),
        "ipv6_asn_ranges": int(arrays["ipv6_asn"].size),
        "orgs": len(orgs),
        "network_cidrs": sum(len(v) for v in networks.values()),
        "datacenter_asns": len(dc_asns),
        "user_agents": len(user_agents["user_agent"]),
    }
    return summary


def iter_lines(summary: VendorSummary) -> Iterable[str]:
    """Human-readable summary lines for the CLI."""
    for name, size in summary.files.items():
        yield f"  {name:32s} {size / 1024:9.1f} KiB"
    yield f"  {'total':32s} {summary.total_bytes / 1024:9.1f} KiB"
    for key, value in summary.counts.items():
        yield f"  {key}: {value}"
    for warning in summary.warnings:
        yield f"  warning: {warning}"
