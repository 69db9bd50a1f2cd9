"""Drift monitoring: live traffic against the champion's training data.

At training time ``reference_profile`` summarises the training features and scores (quantile
bins per feature, the score histogram, the bot share per network and per day) and the run logs
it as ``reference_profile.json``. ``monitor`` compares a data directory's traffic with it:

- population stability (PSI) per feature, on the reference's bins;
- PSI of the score distribution;
- bot share per network (ASN, and the security-vendor flag) against the reference, and per day;
- candidate new scanners: networks whose events arrive within seconds of delivery and fan out
  over many recipients, the signature of a scanner, and that the model does not flag or that
  were absent from its training data (a new vendor it may catch on timing alone, but news for the
  vendor lists all the same).

A few lines of numpy rather than evidently or nannyml: both pull in large dependency trees
(plotly, scipy/statsmodels stacks, their own pins of pandas/numpy) for PSI and histograms; the
reference must travel with the model as a small JSON artifact anyway; and the part that matters
most here, the unflagged fan-out networks, is specific to this domain and neither provides it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.enrichment.reference import load_reference
from features.pipeline import context_arrays
from monitoring.thresholds import Thresholds

BINS = 10
SCORE_EDGES = np.linspace(0.0, 1.0, 11)
EPS = 1e-4  # floor of a bin's share, so an empty bin gives a large but finite PSI
AT_DELIVERY_S = 60.0
# Reported, never alerting: the number of links is fixed per campaign, so its distribution moves
# with whichever few campaigns a window holds (PSI 0.7-3.9 between two simulated worlds of one
# profile), not with how anything behaves.
CONTENT_FEATURES = frozenset({"link_count"})
FANOUT_KEY = "asn_contacts_60s"  # recipients reached from the same network in the last minute


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin of ``edges`` (inner edges; open-ended outer bins) plus a NaN bin."""
    return _bins(values, edges) / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(((a - e) * np.log(a / e)).sum())


def _networks(ctx: pd.DataFrame, feats: pd.DataFrame, enrichers) -> np.ndarray:  # noqa: ANN001

    cols = context_arrays(ctx)
    return enrichers.ip.enrich(cols["ip"], cols["asn"])["asn"]


def _share_by(keys: np.ndarray, is_bot: np.ndarray) -> dict[str, dict[str, float]]:
    return _shares_of(_keyed(keys, is_bot))


def feature_edges(values: np.ndarray) -> np.ndarray:
    """Inner bin edges of a feature: its deciles, and where a value holds more than half a
    decile's share (a flag that is mostly 0, a count that is mostly 0), the next value above
    it too, so that the value has a bin of its own. With deciles alone, a flag set on 1% of
    events had one bin for 0 and 1, and no shift of it could show."""
    finite = np.sort(values[np.isfinite(values)])
    if not finite.size:
        return np.zeros(0, dtype=np.float64)
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]))
    lo = np.searchsorted(finite, edges, side="left")
    hi = np.searchsorted(finite, edges, side="right")
    heavy = (hi - lo) > finite.size / (2 * BINS)
    above = finite[hi[heavy & (hi < finite.size)]]
    return np.unique(np.concatenate([edges, above]).astype(np.float64))


def reference_profile(
    feats: pd.DataFrame, proba: np.ndarray, is_bot: np.ndarray, ctx: pd.DataFrame, enrichers
) -> dict[str, Any]:  # noqa: ANN001
    """What ``monitor`` compares against: bins and shares of the training data."""
    features = {}
    for name in feats.columns:
        values = feats[name].to_numpy(dtype=np.float64)
        edges = feature_edges(values)
        features[name] = {"edges": edges.tolist(), "shares": _shares(values, edges).tolist()}
    asn = _networks(ctx, feats, enrichers)
    return {
        "events": int(len(feats)),
        "features": features,
        "score": _shares(np.asarray(proba, dtype=np.float64), SCORE_EDGES[1:-1]).tolist(),
        "bot_share": float(np.mean(is_bot)) if len(is_bot) else 0.0,
        "by_asn": _share_by(asn, np.asarray(is_bot)),
        "by_vendor_flag": _share_by(
            feats["net_security_vendor"].to_numpy() > 0, np.asarray(is_bot)
        ),
    }


@dataclass
class LiveCounts:
    """What :func:`monitor` needs of scored events, as counts that add up over parts of whole
    tenants (features never look across tenants): a window is monitored part by part, in the
    memory of its largest part, with the report of the whole."""

    events: int
    bots: int
    feature_bins: dict[str, np.ndarray]  # per feature: events per reference bin, then NaN
    score_bins: np.ndarray
    by_asn: dict[str, np.ndarray]  # key -> [events, bots]
    by_vendor_flag: dict[str, np.ndarray]
    by_day: dict[str, np.ndarray]
    networks: pd.DataFrame  # watched events per ASN: events, fast, flagged, new (by ASN)
    fanout: pd.DataFrame  # distinct (asn, tenant, contact) of the watched fast fan-out events

    def __add__(self, other: LiveCounts) -> LiveCounts:
        keys = ["asn", "tenant", "contact"]
        networks = pd.concat([self.networks, other.networks]).groupby(level=0)
        return LiveCounts(
            self.events + other.events,
            self.bots + other.bots,
            {k: v + other.feature_bins[k] for k, v in self.feature_bins.items()},
            self.score_bins + other.score_bins,
            _add_keyed(self.by_asn, other.by_asn),
            _add_keyed(self.by_vendor_flag, other.by_vendor_flag),
            _add_keyed(self.by_day, other.by_day),
            networks.agg({"events": "sum", "fast": "sum", "flagged": "sum", "new": "all"}),
            pd.concat([self.fanout, other.fanout]).drop_duplicates(keys, ignore_index=True),
        )


def _add_keyed(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    none = np.zeros(2, dtype=np.int64)
    return {k: a.get(k, none) + b.get(k, none) for k in a.keys() | b.keys()}


def _bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Events per bin of ``edges`` (as :func:`_shares`), then the NaN bin."""
    finite = np.isfinite(values)
    idx = np.searchsorted(edges, values[finite], side="right")
    return np.append(np.bincount(idx, minlength=len(edges) + 1), (~finite).sum())


def _keyed(keys: np.ndarray, is_bot: np.ndarray) -> dict[str, np.ndarray]:
    """Per key (as text): [events, bots]."""
    frame = pd.DataFrame({"k": keys.astype(str), "bot": is_bot.astype(np.int64)})
    g = frame.groupby("k")["bot"].agg(["size", "sum"])
    return {
        str(k): np.array([int(n), int(b)])
        for k, n, b in zip(g.index, g["size"], g["sum"], strict=True)
    }


def _shares_of(keyed: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """As :func:`_share_by` gives them: keys in text order, events and bot share."""
    return {
        k: {"events": int(keyed[k][0]), "bot_share": float(keyed[k][1] / keyed[k][0])}
        for k in sorted(keyed)
    }


def count_live(
    ctx: pd.DataFrame,
    feats: pd.DataFrame,
    proba: np.ndarray,
    is_bot: np.ndarray,
    reference: dict[str, Any],
    enrichers,  # noqa: ANN001
    th: Thresholds = Thresholds(),
) -> LiveCounts:
    """The counts of one part's scored events (``ctx`` and ``feats`` row-aligned)."""
    is_bot = np.asarray(is_bot, dtype=bool)
    bins = {
        name: _bins(feats[name].to_numpy(dtype=np.float64), np.asarray(ref["edges"]))
        for name, ref in reference["features"].items()
        if name in feats
    }
    asn = _networks(ctx, feats, enrichers)
    day = pd.to_datetime(ctx["occurred_at"], utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    known = np.fromiter((int(k) for k in reference["by_asn"]), dtype=np.int64)
    new = ~np.isin(asn, known)
    watched = (~is_bot | new) & (asn > 0)
    secs = feats["secs_since_delivery"].to_numpy(dtype=np.float64)
    fast = watched & (secs < AT_DELIVERY_S)
    fanout = fast & (feats[FANOUT_KEY].to_numpy() >= th.candidate_fanout)
    frame = pd.DataFrame(
        {"asn": asn[watched], "fast": fast[watched], "bot": is_bot[watched], "new": new[watched]}
    )
    networks = frame.groupby("asn").agg(
        events=("fast", "size"), fast=("fast", "sum"), flagged=("bot", "sum"), new=("new", "all")
    )
    # a recipient is (tenant, contact): two tenants' contact ids are different people
    pairs = pd.DataFrame(
        {
            "asn": asn[fanout],
            "tenant": ctx["tenant_id"].to_numpy()[fanout],
            "contact": ctx["contact_id"].to_numpy()[fanout],
        }
    )
    return LiveCounts(
        events=int(len(feats)),
        bots=int(is_bot.sum()),
        feature_bins=bins,
        score_bins=_bins(np.asarray(proba, dtype=np.float64), SCORE_EDGES[1:-1]),
        by_asn=_keyed(asn, is_bot),
        by_vendor_flag=_keyed(feats["net_security_vendor"].to_numpy() > 0, is_bot),
        by_day=_keyed(day, is_bot),
        networks=networks,
        fanout=pairs.drop_duplicates(ignore_index=True),
    )


def candidate_scanners(counts: LiveCounts, th: Thresholds) -> list[dict[str, Any]]:
    """Networks that fan out over many recipients within seconds of delivery and that the model
    does not flag, or that were not in its training data at all (the reference's networks). A
    model that generalises may well flag a new vendor on timing alone; the network is still news
    for whoever curates the vendor lists, and the report says how much the model flags.
    """
    stats = counts.networks.sort_index()
    if stats.empty:
        return []
    reach = counts.fanout.groupby("asn").size()  # distinct (asn, tenant, contact) rows
    stats = stats.assign(recipients=reach.reindex(stats.index, fill_value=0))
    stats["fast_share"] = stats["fast"] / stats["events"]
    hits = stats[
        (stats["recipients"] >= th.candidate_min_recipients)
        & (stats["fast_share"] >= th.candidate_min_fast_share)
    ].sort_values("recipients", ascending=False)

    ref = load_reference()
    return [
        {
            "asn": int(a),
            "network": ref.org_of(int(a)) or f"AS{int(a)}",
            "unflagged_events": int(r["events"] - r["flagged"]),
            "events": int(r["events"]),
            "model_flagged_share": float(r["flagged"] / r["events"]),
            "new_since_training": bool(r["new"]),
            "within_a_minute_share": float(r["fast_share"]),
            "recipients_fanned_out": int(r["recipients"]),
        }
        for a, (_, r) in zip(hits.index.to_numpy(dtype=np.int64), hits.iterrows(), strict=True)
    ]


def report(
    counts: LiveCounts, reference: dict[str, Any], th: Thresholds = Thresholds()
) -> dict[str, Any]:
    """The drift report (JSON-friendly), with ``alerts`` naming what crossed a threshold."""
    alerts: list[str] = []
    total = max(counts.events, 1)
    feature_psi = {
        name: psi(reference["features"][name]["shares"], bins / total)
        for name, bins in counts.feature_bins.items()
    }
    judged = counts.events >= th.psi_min_events  # fewer: the PSI is shown, not judged
    for name, value in sorted(feature_psi.items(), key=lambda kv: -kv[1]):
        if judged and value > th.feature_psi and name not in CONTENT_FEATURES:
            alerts.append(f"feature {name}: PSI {value:.3f} > {th.feature_psi}")
    score_psi = psi(reference["score"], counts.score_bins / total)
    if judged and score_psi > th.score_psi:
        alerts.append(f"score distribution: PSI {score_psi:.3f} > {th.score_psi}")

    ref_data = load_reference()
    networks = []
    for key, live in _shares_of(counts.by_asn).items():
        before = reference["by_asn"].get(key)
        row: dict[str, Any] = {"asn": int(key), "network": ref_data.org_of(int(key)), **live}
        if before is not None:
            row["reference_bot_share"] = before["bot_share"]
            row["change"] = live["bot_share"] - before["bot_share"]
            enough = min(live["events"], before["events"]) >= th.network_min_events
            if enough and abs(row["change"]) > th.network_share_change and int(key) > 0:
                alerts.append(
                    f"network AS{key} {row['network']}: bot share {before['bot_share']:.1%} -> "
                    f"{live['bot_share']:.1%}"
                )
        networks.append(row)
    networks.sort(key=lambda r: -r["events"])
    per_day = {d: v["bot_share"] for d, v in _shares_of(counts.by_day).items()}
    candidates = candidate_scanners(counts, th)
    for c in candidates:
        how = (
            f"new since training, the model flags {c['model_flagged_share']:.0%} of it"
            if c["new_since_training"]
            else "unflagged"
        )
        alerts.append(
            f"candidate new scanner: AS{c['asn']} {c['network']} fans out to "
            f"{c['recipients_fanned_out']} recipients within seconds of delivery ({how})"
        )
    return {
        "events": counts.events,
        "thresholds": asdict(th),
        "alerts": alerts,
        "psi_judged": judged,
        "feature_psi": dict(sorted(feature_psi.items(), key=lambda kv: -kv[1])),
        "score_psi": score_psi,
        "bot_share": counts.bots / counts.events if counts.events else 0.0,
        "reference_bot_share": reference["bot_share"],
        "by_vendor_flag": _shares_of(counts.by_vendor_flag),
        "reference_by_vendor_flag": reference["by_vendor_flag"],
        "networks": networks[:50],
        "bot_share_by_day": per_day,
        "candidate_scanners": candidates,
    }
