"""Pure feature computation over an event-context frame (events joined with their message).

``build_features`` is the only place features are computed. The batch job, training, the online
API (history + new events) and the Spark engine (one tenant per partition) all call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from contract.schema import EVENTS, MESSAGE_CONTEXT
from features import kernels
from features.definitions import BURST_KEYS, FEATURE_NAMES, FEATURES, WINDOWS_S
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
    return pd.to_datetime(series, utc=True).to_numpy(dtype="datetime64[ns]").view(np.int64)


def causal_order(ctx: pd.DataFrame) -> np.ndarray:
    """Positions of ``ctx`` in total order (tenant, occurred_at, event_id)."""
    tenant, _ = _codes(ctx["tenant_id"].to_numpy())
    t = _ns(ctx["occurred_at"])
    order = np.lexsort((t, tenant))
    ts, tt = t[order], tenant[order]
    tie = np.zeros(len(order), dtype=bool)
    same = (ts[1:] == ts[:-1]) & (tt[1:] == tt[:-1])
    tie[1:] |= same
    tie[:-1] |= same
    if tie.any():
        # Equal timestamps are ordered by event_id so every engine agrees on "before".
        rank = np.zeros(len(ctx), dtype=np.int64)
        ids = ctx["event_id"].to_numpy()[order[tie]]
        rank[order[tie]] = pd.factorize(ids, sort=True)[0]
        order = np.lexsort((rank, t, tenant))
    return order


def _grouped(keys: list[np.ndarray], order_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permutation grouping rows by ``keys`` (stable in causal order) and the group ids."""
    perm = np.lexsort((order_pos, *reversed(keys)))
    change = np.zeros(len(perm), dtype=bool)
    for k in keys:
        kp = k[perm]
        change[1:] |= kp[1:] != kp[:-1]
    return perm, np.cumsum(change)


def build_features(ctx: pd.DataFrame, enrichers: Enrichers) -> pd.DataFrame:
    """Compute every feature of ``FEATURES`` for each row of the event-context frame.

    Causal: a row's features use that event and the events before it in (tenant, occurred_at,
    event_id) order within ``ctx``. The result has ``ctx``'s index and row order, float32 columns.
    """
    n = len(ctx)
    out: dict[str, np.ndarray] = {}
    if n == 0:
        return pd.DataFrame({f.name: pd.Series(dtype="float32") for f in FEATURES}, index=ctx.index)

    t = _ns(ctx["occurred_at"])
    sent = _ns(ctx["sent_at"])
    delivered = pd.to_datetime(ctx["delivered_at"], utc=True)
    deliv_ns = _ns(delivered)
    is_click = (ctx["type"].to_numpy() == "click").astype(np.int8)
    link_count = pd.to_numeric(ctx["link_count"], errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    link_pos = pd.to_numeric(ctx["link_position"], errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    link_pos = np.where(is_click == 1, link_pos, np.nan)

    # Timing
    out["secs_since_delivery"] = np.where(delivered.isna().to_numpy(), np.nan, (t - deliv_ns) / NS)
    out["secs_since_send"] = (t - sent) / NS

    # The event itself
    out["is_sms"] = (ctx["channel"].to_numpy() == "sms").astype(np.int8)
    out["is_click"] = is_click
    method = ctx["http_method"].astype("string").str.upper()
    out["http_method"] = np.select(
        [
            method.isna().to_numpy(),
            (method == "GET").fillna(False).to_numpy(),
            (method == "HEAD").fillna(False).to_numpy(),
        ],
        [-1, 0, 1],
        default=2,
    ).astype(np.int8)
    hidden = ctx["is_hidden_link"].astype("boolean")
    out["is_hidden_link"] = np.where(
        hidden.isna().to_numpy(), -1, hidden.fillna(False).to_numpy().astype(np.int8)
    )
    out["link_position"] = link_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        out["link_position_rel"] = np.where(link_count > 0, link_pos / link_count, np.nan)
    out["link_count"] = link_count

    # Enrichment
    ip = enrichers.ip.enrich(ctx["ip"], ctx.get("asn"))
    ua = enrichers.ua.parse(ctx["user_agent"])

    # Causal order, then per-message history
    order = causal_order(ctx)
    order_pos = np.empty(n, dtype=np.int64)
    order_pos[order] = np.arange(n)
    tenant, _ = _codes(ctx["tenant_id"].to_numpy())
    message, n_msg = _codes(ctx["message_id"].to_numpy())
    contact, n_contact = _codes(ctx["contact_id"].to_numpy())

    perm, group = _grouped([tenant, message], order_pos)
    cols = {k: np.empty(n, dtype=np.int64) for k in ("prior", "opens", "clicks", "distinct", "gap")}
    lp = np.where(np.isnan(link_pos), -1, link_pos).astype(np.int64)
    kernels.message_history(
        group,
        t[perm],
        is_click[perm],
        lp[perm],
        cols["prior"],
        cols["opens"],
        cols["clicks"],
        cols["distinct"],
        cols["gap"],
    )
    hist = {k: np.empty(n, dtype=np.int64) for k in cols}
    for k, v in cols.items():
        hist[k][perm] = v
    out["msg_prior_events"] = hist["prior"]
    out["msg_prior_opens"] = hist["opens"]
    out["msg_prior_clicks"] = hist["clicks"]
    out["msg_distinct_links"] = hist["distinct"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["msg_link_coverage"] = np.where(link_count > 0, hist["distinct"] / link_count, np.nan)
    out["secs_since_msg_prev_event"] = np.where(hist["gap"] < 0, np.nan, hist["gap"] / NS)
    out["msg_first_event"] = (hist["prior"] == 0).astype(np.int8)
    out["click_without_open"] = ((is_click == 1) & (hist["opens"] == 0)).astype(np.int8)

    # Bursts across recipients, per tenant and key
    key_arrays = {"ip": ip["ip_key"], "prefix": ip["prefix_key"], "asn": ip["asn"]}
    missing = {"ip": ip["ip_version"] == 0, "prefix": ip["ip_version"] == 0, "asn": ip["asn"] == 0}
    for key in BURST_KEYS:
        perm, group = _grouped([tenant, key_arrays[key].astype(np.int64)], order_pos)
        for w in WINDOWS_S:
            ev, da, db = (np.empty(n, dtype=np.int32) for _ in range(3))
            kernels.window_counts(
                group, t[perm], message[perm], contact[perm], n_msg, n_contact, w * NS, ev, da, db
            )
            for name, vals in (
                (f"{key}_events_{w}s", ev),
                (f"{key}_msgs_{w}s", da),
                (f"{key}_contacts_{w}s", db),
            ):
                col = np.empty(n, dtype=np.float32)
                col[perm] = vals
                col[missing[key]] = np.nan
                out[name] = col
    send = ctx["campaign_id"].where(ctx["campaign_id"].notna(), ctx["automation_id"])
    send_code, _ = _codes(send.to_numpy())
    perm, group = _grouped([tenant, send_code, ip["asn"].astype(np.int64)], order_pos)
    for w in WINDOWS_S:
        ev, da, db = (np.empty(n, dtype=np.int32) for _ in range(3))
        kernels.window_counts(
            group, t[perm], message[perm], contact[perm], n_msg, n_contact, w * NS, ev, da, db
        )
        col = np.empty(n, dtype=np.float32)
        col[perm] = ev
        col[missing["asn"] | send.isna().to_numpy()] = np.nan
        out[f"send_asn_events_{w}s"] = col

    for name in FEATURE_NAMES:
        if name not in out:
            out[name] = ip[name] if name in ip else ua[name]
    return pd.DataFrame(
        {name: np.asarray(out[name], dtype=np.float32) for name in FEATURE_NAMES}, index=ctx.index
    )
