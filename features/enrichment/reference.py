"""The vendored reference data (ASN ranges, provider networks, vendor ASNs, real User-Agents).

``load_reference()`` reads ``features/enrichment/data/`` once per process (cached); nothing is read
at import time. The files are built by ``botfilter vendor`` (see :mod:`features.enrichment.vendor`).
"""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from core.errors import BotfilterError

from .vendor import ASN_FILE, DATA_DIR, NETWORKS_FILE, ORGS_FILE, USER_AGENTS_FILE, read_json_gz

NETWORK_CATEGORIES = (
    "amazon",
    "google",
    "googlebot",
    "microsoft",
    "microsoft_eop",
    "google_own",
    "google_cloud",
    "cloudflare_email_security",
    "apple_proxy",
    "facebook",
    "bing",
    "cloudflare",
    "oracle",
    "digitalocean",
    "linode",
    "vultr",
    "telegram",
    "twitter",
    "openai",
    "datacenter",
    "vpn",
)
T = TypeVar("T")

VENDOR_KEYS = (
    "proofpoint",
    "mimecast",
    "barracuda",
    "google_mail",
    "yahoo",
    "microsoft",
    "mail_security",
    "hosting",
    "alibaba_cloud",
    "vultr",
)


@dataclass(frozen=True, eq=False)
class Reference:
    """Vendored lookup tables. Ranges are inclusive, sorted by start and non-overlapping.

    ``ipv4_org`` / ``ipv6_org`` index into ``orgs`` (-1 = no organisation name). IPv6 addresses are
    split into the high and low 64 bits.
    """

    ipv4_start: np.ndarray  # uint32
    ipv4_end: np.ndarray  # uint32
    ipv4_asn: np.ndarray  # uint32
    ipv4_org: np.ndarray  # int32
    ipv6_start_hi: np.ndarray  # uint64
    ipv6_start_lo: np.ndarray  # uint64
    ipv6_end_hi: np.ndarray  # uint64
    ipv6_end_lo: np.ndarray  # uint64
    ipv6_asn: np.ndarray  # uint32
    ipv6_org: np.ndarray  # int32
    orgs: np.ndarray  # object array of str
    networks: dict[str, list[str]]  # category -> CIDR strings (IPv4 and IPv6)
    datacenter_asns: frozenset[int]
    vendor_asns: dict[str, tuple[int, ...]]
    user_agents: pd.DataFrame  # user_agent, weight, device_category

    def org_of(self, asn: int) -> str:
        """Organisation name of an ASN ('' when the ASN is not in the table)."""
        for asns, orgs in ((self.ipv4_asn, self.ipv4_org), (self.ipv6_asn, self.ipv6_org)):
            hits = np.flatnonzero(asns == asn)
            if hits.size and orgs[hits[0]] >= 0:
                return str(self.orgs[orgs[hits[0]]])
        return ""


def _read(path: Path, loader: Callable[[Path], T]) -> T:
    if not path.is_file():
        raise BotfilterError(
            f"vendored enrichment file missing: {path} (rebuild with `botfilter vendor`)"
        )
    try:
        return loader(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise BotfilterError(f"vendored enrichment file unreadable: {path}: {exc}") from exc


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _org_codes(asn: np.ndarray, org_asn: np.ndarray, org_index: np.ndarray) -> np.ndarray:
    """Per-range org codes from the stored ASN -> org map (-1 where the ASN has no name)."""
    pos = np.searchsorted(org_asn, asn).clip(0, max(len(org_asn) - 1, 0))
    if not len(org_asn):
        return np.full(len(asn), -1, dtype=np.int32)
    return np.where(org_asn[pos] == asn, org_index[pos], -1).astype(np.int32)


@functools.lru_cache(maxsize=4)
def load_reference(path: Path | None = None) -> Reference:
    """Load the vendored data from ``path`` (default: the packaged data folder); cached."""
    base = Path(path) if path is not None else DATA_DIR
    arrays = _read(base / ASN_FILE, _load_npz)
    orgs = _read(base / ORGS_FILE, read_json_gz)
    net = _read(base / NETWORKS_FILE, read_json_gz)
    uas = _read(base / USER_AGENTS_FILE, read_json_gz)
    try:
        # Starts are stored as deltas; uint32 cumsum wraps never since ranges are within IPv4.
        ipv4_start = np.cumsum(arrays["ipv4_start_delta"], dtype=np.uint64).astype(np.uint32)
        ipv4_end = ipv4_start + arrays["ipv4_length"].astype(np.uint32)
        ipv4_org, ipv6_org = (
            _org_codes(arrays[f"{fam}_asn"], arrays["org_asn"], arrays["org_index"])
            for fam in ("ipv4", "ipv6")
        )
        org_array = np.empty(len(orgs), dtype=object)
        org_array[:] = orgs
        reference = Reference(
            ipv4_start=ipv4_start,
            ipv4_end=ipv4_end,
            ipv4_asn=arrays["ipv4_asn"],
            ipv4_org=ipv4_org,
            ipv6_start_hi=arrays["ipv6_start_hi"],
            ipv6_start_lo=arrays["ipv6_start_lo"],
            ipv6_end_hi=arrays["ipv6_end_hi"],
            ipv6_end_lo=arrays["ipv6_end_lo"],
            ipv6_asn=arrays["ipv6_asn"],
            ipv6_org=ipv6_org,
            orgs=org_array,
            networks={k: list(v) for k, v in net["networks"].items()},
            datacenter_asns=frozenset(int(a) for a in net["datacenter_asns"]),
            vendor_asns={k: tuple(int(a) for a in v) for k, v in net["vendor_asns"].items()},
            user_agents=pd.DataFrame(
                {
                    "user_agent": pd.Series(uas["user_agent"], dtype=object),
                    "weight": np.asarray(uas["weight"], dtype=np.float64),
                    "device_category": pd.Series(uas["device_category"], dtype=object),
                }
            ),
        )
    except (KeyError, TypeError) as exc:
        raise BotfilterError(f"vendored enrichment data in {base} is incomplete: {exc}") from exc
    missing = [c for c in NETWORK_CATEGORIES if c not in reference.networks]
    missing += [v for v in VENDOR_KEYS if v not in reference.vendor_asns]
    if missing:
        raise BotfilterError(f"vendored enrichment data in {base} lacks: {', '.join(missing)}")
    return reference
