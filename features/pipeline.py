"""Pure feature computation over an event-context frame (events joined with their message).

``build_features`` is the only place features are computed. The batch job, training, the online
API (history + new events) and the Spark engine (one tenant per partition) all call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from contract.schema import EVENTS, MESSAGE_CONTEXT
from features import kernels
from features.definitions import BURST_KEYS, FEATURE_NAMES, WINDOWS_S
from features.enrichment.ip import IpEnricher
from features.enrichment.reference import Reference, load_reference
from features.enrichment.useragent import UaParser

NS = 1_000_000_000
# Columns build_features reads: the event's own fields plus its message context.
CONTEXT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [c for c in EVENTS.names if c not in ("label", "bot_kind", "url")] + list(MESSAGE_CONTEXT)
    )
)


@dataclass
class Enrichers:
    """The IP and User-Agent enrichers, built once per process from the vendored reference."""

    reference: Reference

    @classmethod
    def load(cls) -> Enrichers:
        """Build from the vendored reference data."""
        return cls(load_reference())

    @cached_property
    def ip(self) -> IpEnricher:
        return IpEnricher(self.reference)

    @cached_property
    def ua(self) -> UaParser:
        return UaParser(self.reference)


def event_context(messages: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Join clean events with their message's context columns, keeping the events' row order."""
    msg_cols = [c for c in MESSAGE_CONTEXT if c != "tenant_id"]
    ctx = events.merge(
        messages[msg_cols], on="message_id", how="left", validate="many_to_one", sort=False
    )
    ctx.index = events.index
    return ctx


def _codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    n = len(uniques)
    codes[codes < 0] = n  # missing values share one code of their own
    return codes, n + 1


def _ns(series: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch; missing becomes INT64 min."""
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        series.dtype
    ):
        # Already typed (the contract's output): no per-element parsing, only a unit change.
        values = (
            series.dt.tz_convert("UTC")
            if series.dt.tz is not None
            else series.dt.tz_localize("UTC")
        )
        return values.dt.as_unit("ns").array.asi8.copy()
    return pd.to_datetime(series, utc=True).dt.as_unit("ns").array.asi8.copy()


def _causal_order(tenant: np.ndarray, t: np.ndarray, event_id: np.ndarray) -> np.ndarray:
    # Two stable passes (time, then the few tenant codes) beat a lexsort on large frames.
    by_time = np.argsort(t, kind="stable")
    small = tenant.astype(np.int16 if tenant.max(initial=0) < 2**15 else np.int64)
    order = by_time[np.argsort(small[by_time], kind="stable")]
    ts, tt = t[order], tenant[order]
    same = (ts[1:] == ts[:-1]) & (tt[1:] == tt[:-1])
    if same.any():
        # Equal timestamps are ordered by event_id so every engine agrees on "before".
        tie = np.zeros(len(order), dtype=bool)
        tie[1:] |= same
        tie[:-1] |= same
        rank = np.zeros(len(order), dtype=np.int64)
        rank[order[tie]] = pd.factorize(event_id[order[tie]], sort=True)[0]
        order = np.lexsort((rank, t, tenant))
    return order


def causal_order(ctx: pd.DataFrame) -> np.ndarray:
    """Positions of ``ctx`` in total order (tenant, occurred_at, event_id)."""
    tenant, _ = _codes(ctx["tenant_id"].to_numpy())
    return _causal_order(tenant, _ns(ctx["occurred_at"]), ctx["event_id"].to_numpy())


def _group_sort(
    key: np.ndarray, tenant: np.ndarray, n_tenant: int
) -> tuple[np.ndarray, np.ndarray]:
    """For arrays already in causal order: a stable permutation grouping rows by (tenant, key),
    and each row's group id in that permutation."""
    codes = pd.factorize(key)[0].astype(np.int64)
    combined = codes * n_tenant + tenant
    perm = np.argsort(combined, kind="stable")  # stable: causal order is kept inside a group
    sorted_key = combined[perm]
    group = np.empty(len(perm), dtype=np.int64)
    group[0] = 0
    np.cumsum(sorted_key[1:] != sorted_key[:-1], out=group[1:])
    return perm, group


def build_features(
    ctx: pd.DataFrame, enrichers: Enrichers, ip: Mapping[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """Compute every feature of ``FEATURES`` for each row of the event-context frame.

    Causal: a row's features use that event and the events before it in (tenant, occurred_at,
    event_id) order within ``ctx``. The result has ``ctx``'s index and row order, float32 columns.
    ``ip`` is ``enrichers.ip.enrich(ctx["ip"], ctx["asn"])`` when the caller already has it.
    """
    n = len(ctx)
    col = {name: j for j, name in enumerate(FEATURE_NAMES)}
    # One (features x rows) block: the frame below is a view of it, no per-column copies.
    mat = np.empty((len(FEATURE_NAMES), n), dtype=np.float32)
    if n == 0:
        return pd.DataFrame(mat.T, columns=list(FEATURE_NAMES), index=ctx.index)

    t = _ns(ctx["occurred_at"])
    sent = _ns(ctx["sent_at"])
    deliv_ns = _ns(ctx["delivered_at"])
    undelivered = ctx["delivered_at"].isna().to_numpy()
    is_click = (ctx["type"].to_numpy() == "click").astype(np.int8)
    link_count = pd.to_numeric(ctx["link_count"], errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    link_pos = pd.to_numeric(ctx["link_position"], errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    link_pos = np.where(is_click == 1, link_pos, np.nan)

    # Timing
    mat[col["secs_since_delivery"]] = np.where(undelivered, np.nan, (t - deliv_ns) / NS)
    mat[col["secs_since_send"]] = (t - sent) / NS

    # The event itself
    mat[col["is_sms"]] = ctx["channel"].to_numpy() == "sms"
    mat[col["is_click"]] = is_click
    codes, uniques = pd.factorize(ctx["http_method"].to_numpy(dtype=object), use_na_sentinel=True)
    upper = [str(u).upper() for u in uniques]
    lut = np.array(
        [0 if u == "GET" else 1 if u == "HEAD" else 2 for u in upper] + [-1], dtype=np.int8
    )
    mat[col["http_method"]] = lut[codes]  # code -1 (missing) picks the trailing -1
    hidden = ctx["is_hidden_link"].astype("boolean")
    mat[col["is_hidden_link"]] = np.where(
        hidden.isna().to_numpy(), -1, hidden.fillna(False).to_numpy().astype(np.int8)
    )
    mat[col["link_position"]] = link_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        mat[col["link_position_rel"]] = np.where(link_count > 0, link_pos / link_count, np.nan)
    mat[col["link_count"]] = link_count

    # Enrichment
    if ip is None:
        ip = enrichers.ip.enrich(ctx["ip"], ctx.get("asn"))
    ua = enrichers.ua.parse(ctx["user_agent"])
    for name in FEATURE_NAMES:
        if name in ip:
            mat[col[name]] = ip[name]
        elif name in ua:
            mat[col[name]] = ua[name]

    # Everything below runs in causal order; ``order[i]`` is the original row of position i.
    tenant, n_tenant = _codes(ctx["tenant_id"].to_numpy())
    order = _causal_order(tenant, t, ctx["event_id"].to_numpy())
    t_o, tenant_o = t[order], tenant[order]
    message, n_msg = _codes(ctx["message_id"].to_numpy())
    contact, n_contact = _codes(ctx["contact_id"].to_numpy())
    message_o, contact_o = message[order], contact[order]

    # Per-message history
    perm, group = _group_sort(message_o, tenant_o, n_tenant)
    rows = order[perm]
    h = {k: np.empty(n, dtype=np.int64) for k in ("prior", "opens", "clicks", "distinct", "gap")}
    lp = np.where(np.isnan(link_pos), -1, link_pos).astype(np.int64)
    kernels.message_history(
        group,
        t[rows],
        is_click[rows],
        lp[rows],
        h["prior"],
        h["opens"],
        h["clicks"],
        h["distinct"],
        h["gap"],
    )
    for k, v in h.items():
        h[k] = np.empty_like(v)
        h[k][rows] = v
    mat[col["msg_prior_events"]] = h["prior"]
    mat[col["msg_prior_opens"]] = h["opens"]
    mat[col["msg_prior_clicks"]] = h["clicks"]
    mat[col["msg_distinct_links"]] = h["distinct"]
    with np.errstate(divide="ignore", invalid="ignore"):
        mat[col["msg_link_coverage"]] = np.where(link_count > 0, h["distinct"] / link_count, np.nan)
    mat[col["secs_since_msg_prev_event"]] = np.where(h["gap"] < 0, np.nan, h["gap"] / NS)
    mat[col["msg_first_event"]] = h["prior"] == 0
    mat[col["click_without_open"]] = (is_click == 1) & (h["opens"] == 0)

    # Bursts across recipients, per tenant and key
    ev, da, db = (np.empty(n, dtype=np.int32) for _ in range(3))

    def windows(key_o: np.ndarray, names: dict[str, str], missing: np.ndarray) -> None:
        perm, group = _group_sort(key_o, tenant_o, n_tenant)
        rows = order[perm]
        t_g, a_g, b_g = t_o[perm], message_o[perm], contact_o[perm]
        for w in WINDOWS_S:
            kernels.window_counts(group, t_g, a_g, b_g, n_msg, n_contact, w * NS, ev, da, db)
            for out_name, vals in (("events", ev), ("msgs", da), ("contacts", db)):
                if out_name in names:
                    j = col[names[out_name].format(w=w)]
                    mat[j, rows] = vals
                    mat[j, missing] = np.nan

    keys = {"ip": ip["ip_key"], "prefix": ip["prefix_key"], "asn": ip["asn"]}
    no_ip = ip["ip_version"] == 0
    no_asn = ip["asn"] == 0
    for key in BURST_KEYS:
        names = {k: f"{key}_{k}_{{w}}s" for k in ("events", "msgs", "contacts")}
        windows(keys[key].astype(np.int64)[order], names, no_asn if key == "asn" else no_ip)
    send = ctx["campaign_id"].where(ctx["campaign_id"].notna(), ctx["automation_id"])
    send_code, n_send = _codes(send.to_numpy())
    send_asn = send_code * (int(ip["asn"].max()) + 1) + ip["asn"].astype(np.int64)
    windows(send_asn[order], {"events": "send_asn_events_{w}s"}, no_asn | send.isna().to_numpy())

    return pd.DataFrame(mat.T, columns=list(FEATURE_NAMES), index=ctx.index, copy=False)
