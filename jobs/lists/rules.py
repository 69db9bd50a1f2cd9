"""List entries and the override rule: which events a tenant's lists force to person or bot.

An entry is one of four kinds, matched against an event (with its message's recipient domain):

* ``ip``: an address or CIDR network (IPv4 or IPv6); the event's ``ip`` lies inside it (an
  IPv4-mapped IPv6 address or network, ``::ffff:203.0.113.9``, is its IPv4 form, as the
  enrichment reads events' addresses);
* ``asn``: an autonomous system number; the event's ASN (given, else resolved from its ip);
* ``user_agent``: a substring of the User-Agent, compared case-insensitively;
* ``domain``: the message's ``recipient_domain`` is that domain or one of its subdomains.

Every kind matches events of either channel: ip, ASN and User-Agent are the event's own, and
the data contract keeps a message's ``recipient_domain`` on SMS too. :func:`channels_of` (the
recomputes a change queues) says so from the same table, :data:`MATCHED`.

An allow entry forces ``is_bot`` false with the reason ``tenant_allowlist``; a block entry
forces it true with ``tenant_blocklist``. When both lists match an event the allow list wins:
it is the narrower statement (a person the tenant knows), usually made to carve an exception
out of a broad block. An entry whose expiry has passed is ignored. Entries of one tenant never
touch another tenant's events.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from contract.schema import CHANNELS
from core.errors import BotfilterError
from core.text import has_controls
from jobs.metrics import parse_reasons

LISTS = ("allow", "block")
KINDS = ("ip", "asn", "user_agent", "domain")
REASONS = {"allow": "tenant_allowlist", "block": "tenant_blocklist"}
MAX_REASONS = 3  # PRODUCT.md: up to 3 reasons per event
#: (ips, given asns) -> resolved ASN per event (0 when unknown), e.g. IpEnricher.enrich's "asn".
AsnLookup = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: The column each kind is matched against (what :func:`_match` reads, whatever the event's
#: channel: every one of these is on both channels' events, as :func:`channels_of` queues).
MATCHED: dict[str, str] = {
    "ip": "ip",
    "asn": "asn",  # the given ASN, else resolved from ``ip``
    "user_agent": "user_agent",
    "domain": "recipient_domain",  # the contract keeps it on SMS messages too
}

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


@dataclass(frozen=True)
class Entry:
    """One list entry of one tenant (``value`` normalised by :func:`normalise`)."""

    tenant_id: str
    list: str
    kind: str
    value: str
    note: str = ""
    author: str = ""
    expires_at: datetime | None = None
    created_at: datetime | None = None
    id: int | None = None

    def active(self, at: pd.Timestamp) -> bool:
        """Whether the entry is in force at ``at`` (no expiry, or a later one)."""
        return self.expires_at is None or pd.Timestamp(self.expires_at) > at


def normalise(kind: str, value: str) -> str:
    """The stored form of an entry's value; a one-line error when it is not valid."""
    if kind not in KINDS:
        raise BotfilterError(f"unknown entry kind {kind!r}: use one of {', '.join(KINDS)}")
    text = str(value).strip()
    if not text:
        raise BotfilterError(f"the {kind} value is empty")
    if has_controls(text):
        raise BotfilterError(f"{kind} {text!r}: control characters are not allowed")
    if kind == "ip":
        try:
            return str(_unmapped(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise BotfilterError(
                f"ip {text!r} is not an IP address or CIDR network (e.g. 203.0.113.0/24)"
            ) from None
    if kind == "asn":
        digits = text[2:].strip() if text.upper().startswith("AS") else text
        if not digits.isdigit() or not 0 < int(digits) < 2**32:
            raise BotfilterError(f"asn {text!r} is not an AS number (e.g. AS13335 or 13335)")
        return str(int(digits))
    if kind == "user_agent":
        if len(text) < 3 or len(text) > 300:
            raise BotfilterError("a user-agent substring must be 3 to 300 characters long")
        return text
    domain = text.lower().lstrip("@").rstrip(".")
    if not _DOMAIN.match(domain) or "." not in domain:
        raise BotfilterError(f"domain {text!r} is not a domain name (e.g. example.com)")
    return domain


def check_list(name: str) -> str:
    """``allow`` or ``block``; a one-line error otherwise."""
    if name not in LISTS:
        raise BotfilterError(f"unknown list {name!r}: use allow or block")
    return name


def stored_value(kind: str, value: str) -> str:
    """An entry's value as stored before :func:`normalise` took IPv4-mapped networks to their
    IPv4 form, in that form (``::ffff:cb00:7109/128`` is ``203.0.113.9/32``); others as they
    are."""
    if kind != "ip":
        return value
    try:
        return str(_network(value))
    except ValueError:
        return value


def _unmapped(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    """An IPv4-mapped IPv6 network (``::ffff:0:0/96`` or narrower) as its IPv4 network."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
    return net


@functools.lru_cache(maxsize=4096)
def _network(value: str) -> Any:
    """A stored ip entry's network, IPv4-mapped ones in their IPv4 form."""
    return _unmapped(ipaddress.ip_network(value, strict=False))


def channels_of(kind: str) -> tuple[str, ...]:
    """Channels whose metrics an entry of ``kind`` can change (the recomputes a change of it
    queues): :func:`_match` reads the kind's column (:data:`MATCHED`) whatever the event's
    channel, and the events of every channel can carry it (the contract keeps
    ``recipient_domain`` on SMS messages), so every channel. One rule for both: a domain entry
    queued email only while it changed SMS verdicts, and SMS metrics stayed stale."""
    if kind not in MATCHED:
        raise BotfilterError(f"unknown entry kind {kind!r}: use one of {', '.join(KINDS)}")
    return CHANNELS


# --- the rule ------------------------------------------------------------------------------


def override_reasons(
    events: pd.DataFrame,
    entries: Sequence[Entry],
    at: pd.Timestamp | datetime | None = None,
    asn_lookup: AsnLookup | None = None,
) -> np.ndarray:
    """Per event: ``tenant_allowlist``, ``tenant_blocklist`` or None.

    ``events`` has ``tenant_id`` and whichever of ``ip``, ``asn``, ``user_agent`` and
    ``recipient_domain`` it knows (a missing column matches nothing). ``asn_lookup`` resolves
    ASNs from IPs when an ASN entry is in force (without it, only a given ``asn`` matches).
    """
    allow, block = override_masks(events, entries, at, asn_lookup)
    out = np.full(len(events), None, dtype=object)
    out[block & ~allow] = REASONS["block"]
    out[allow] = REASONS["allow"]  # the allow list wins (see the module docstring)
    return out


def override_masks(
    events: pd.DataFrame,
    entries: Sequence[Entry],
    at: pd.Timestamp | datetime | None = None,
    asn_lookup: AsnLookup | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The events the in-force allow entries match, and those the block entries match (the
    masks behind :func:`override_reasons`)."""
    when = _utc(at)
    n = len(events)
    hit = {name: np.zeros(n, dtype=bool) for name in LISTS}
    live = [e for e in entries if e.active(when)]
    if not n or not live:
        return hit["allow"], hit["block"]
    asns = _asns(events, asn_lookup) if any(e.kind == "asn" for e in live) else None
    for t in {e.tenant_id for e in live}:
        # A Series comparison: cheap on a categorical column (no object array per call).
        rows = np.flatnonzero((events["tenant_id"] == t).to_numpy(dtype=bool))
        if not rows.size:
            continue
        sub = events if rows.size == n else events.iloc[rows]
        for entry in (e for e in live if e.tenant_id == t):
            found = _match(sub, entry, None if asns is None else asns[rows])
            hit[entry.list][rows[found]] = True
    return hit["allow"], hit["block"]


def _utc(at: pd.Timestamp | datetime | None) -> pd.Timestamp:
    stamp = pd.Timestamp.now(tz="UTC") if at is None else pd.Timestamp(at)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _match(frame: pd.DataFrame, entry: Entry, asns: np.ndarray | None) -> np.ndarray:
    """Which rows of one tenant's ``frame`` the entry matches."""
    if entry.kind == "asn":
        return asns == int(entry.value) if asns is not None else np.zeros(len(frame), bool)
    column = MATCHED[entry.kind]
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    # Each distinct value is tested once (a categorical column is factorized by its codes).
    codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
    test = {"ip": _in_network, "user_agent": _has_substring, "domain": _in_domain}[entry.kind]
    matched = np.append(np.array([test(str(u), entry.value) for u in uniques], bool), False)
    return matched[codes]  # -1 (missing) indexes the trailing False


def _in_network(ip: str, network: str) -> bool:
    try:
        address = ipaddress.ip_address(ip.strip())
        net = _network(network)  # an entry stored in IPv4-mapped form too
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:40.107.1.1 is 40.107.1.1, as enrichment reads it
    return address in net


def _has_substring(agent: str, part: str) -> bool:
    return part.lower() in agent.lower()


def _in_domain(domain: str, entry: str) -> bool:
    d = domain.strip().lower().rstrip(".")
    return d == entry or d.endswith("." + entry)


def _asns(events: pd.DataFrame, lookup: AsnLookup | None) -> np.ndarray:
    """Each event's ASN (0 when unknown): the given one, else resolved from its ip."""
    given = (
        pd.to_numeric(events["asn"], errors="coerce").to_numpy(dtype=np.float64)
        if "asn" in events.columns
        else np.full(len(events), np.nan)
    )
    if lookup is not None and "ip" in events.columns:
        # pandas-stubs: where's `other` omits None, which pandas takes (object columns keep it).
        ip = events["ip"].astype(object).where(events["ip"].notna(), None)  # type: ignore[call-overload]
        ips = ip.to_numpy(dtype=object)
        return np.asarray(lookup(ips, given), dtype=np.int64)
    return np.where(np.isnan(given), 0, given).astype(np.int64)


def apply_to_scores(scores: pd.DataFrame, reasons: np.ndarray) -> pd.DataFrame:
    """``scores`` (rows aligned with ``reasons``) with the overrides applied: ``is_bot`` forced,
    the override's reason first in ``reasons`` and as ``top_reason`` (whichever the frame has).
    ``bot_score`` stays the model's: it is what the model said, the reason says who decided."""
    forced = pd.notna(reasons)
    if not forced.any():
        return scores
    out = scores.copy()
    out.attrs.update(scores.attrs)
    rows = np.flatnonzero(forced)
    is_bot = out["is_bot"].to_numpy(dtype=bool).copy()
    is_bot[rows] = reasons[rows] == REASONS["block"]
    out["is_bot"] = is_bot
    if "bot_kind" in out.columns:  # a person has no bot kind (PRODUCT.md), allowed ones too
        kind = out["bot_kind"].to_numpy(dtype=object).copy()
        kind[rows[~is_bot[rows]]] = ""
        out["bot_kind"] = kind
    if "reasons" in out.columns:
        listed = out["reasons"].astype(object).to_numpy(dtype=object).copy()
        for i in rows:
            listed[i] = with_reason(listed[i], reasons[i])
        out["reasons"] = listed
    if "top_reason" in out.columns:
        top = out["top_reason"].to_numpy(dtype=object).copy()
        top[rows] = reasons[rows]
        out["top_reason"] = top
    return out


def with_reason(reasons: Any, reason: str) -> list[str]:
    """``reason`` first, then the model's own (at most :data:`MAX_REASONS` in all)."""
    rest = [r for r in parse_reasons(reasons) if r not in REASONS.values()]
    return [reason, *rest][:MAX_REASONS]
