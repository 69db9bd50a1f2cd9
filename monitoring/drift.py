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

from dataclasses import asdict
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
    finite = np.isfinite(values)
    idx = np.searchsorted(edges, values[finite], side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    counts = np.append(counts, (~finite).sum())
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(((a - e) * np.log(a / e)).sum())


def _networks(ctx: pd.DataFrame, feats: pd.DataFrame, enrichers) -> np.ndarray:  # noqa: ANN001

    cols = context_arrays(ctx)
    return enrichers.ip.enrich(cols["ip"], cols["asn"])["asn"]


def _share_by(keys: np.ndarray, is_bot: np.ndarray) -> dict[str, dict[str, float]]:
    frame = pd.DataFrame({"k": keys.astype(str), "bot": is_bot.astype(bool)})
    g = frame.groupby("k")["bot"].agg(["size", "mean"])
    return {
        str(k): {"events": int(r["size"]), "bot_share": float(r["mean"])} for k, r in g.iterrows()
    }


def reference_profile(
    feats: pd.DataFrame, proba: np.ndarray, is_bot: np.ndarray, ctx: pd.DataFrame, enrichers
) -> dict[str, Any]:  # noqa: ANN001
    """What ``monitor`` compares against: bins and shares of the training data."""
    features = {}
    for name in feats.columns:
        values = feats[name].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        qs = np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]) if finite.size else []
        edges = np.unique(np.asarray(qs, dtype=np.float64))
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


def candidate_scanners(
    ctx: pd.DataFrame,
    feats: pd.DataFrame,
    is_bot: np.ndarray,
    asn: np.ndarray,
    th: Thresholds,
    known: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """Networks that fan out over many recipients within seconds of delivery and that the model
    does not flag, or that were not in its training data at all (``known``: the reference's
    networks). A model that generalises may well flag a new vendor on timing alone; the network is
    still news for whoever curates the vendor lists, and the report says how much the model flags.
    """
    is_bot = np.asarray(is_bot, dtype=bool)
    new = ~np.isin(asn, np.fromiter(known, dtype=np.int64, count=len(known)))
    watched = (~is_bot | new) & (asn > 0)
    secs = feats["secs_since_delivery"].to_numpy(dtype=np.float64)
    fast = watched & (secs < AT_DELIVERY_S)
    fanout = fast & (feats[FANOUT_KEY].to_numpy() >= th.candidate_fanout)
    frame = pd.DataFrame(
        {
            "asn": asn[watched],
            "fast": fast[watched],
            "fanout": fanout[watched],
            "bot": is_bot[watched],
            "new": new[watched],
            "contact": ctx["contact_id"].to_numpy()[watched],
        }
    )
    if frame.empty:
        return []
    stats = frame.groupby("asn").agg(
        events=("fast", "size"),
        fast=("fast", "sum"),
        flagged=("bot", "sum"),
        new=("new", "all"),
    )
    reach = frame[frame["fanout"]].groupby("asn")["contact"].nunique()
    stats["recipients"] = reach.reindex(stats.index, fill_value=0)
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


def monitor(
    ctx: pd.DataFrame,
    feats: pd.DataFrame,
    proba: np.ndarray,
    is_bot: np.ndarray,
    reference: dict[str, Any],
    enrichers,  # noqa: ANN001
    th: Thresholds = Thresholds(),
) -> dict[str, Any]:
    """The drift report (JSON-friendly), with ``alerts`` naming what crossed a threshold."""
    alerts: list[str] = []
    feature_psi = {}
    for name, ref in reference["features"].items():
        if name not in feats:
            continue
        shares = _shares(feats[name].to_numpy(dtype=np.float64), np.asarray(ref["edges"]))
        feature_psi[name] = psi(ref["shares"], shares)
    for name, value in sorted(feature_psi.items(), key=lambda kv: -kv[1]):
        if value > th.feature_psi and name not in CONTENT_FEATURES:
            alerts.append(f"feature {name}: PSI {value:.3f} > {th.feature_psi}")
    score_live = _shares(np.asarray(proba, dtype=np.float64), SCORE_EDGES[1:-1])
    score_psi = psi(reference["score"], score_live)
    if score_psi > th.score_psi:
        alerts.append(f"score distribution: PSI {score_psi:.3f} > {th.score_psi}")

    asn = _networks(ctx, feats, enrichers)
    live_asn = _share_by(asn, np.asarray(is_bot))

    ref_data = load_reference()
    networks = []
    for key, live in live_asn.items():
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
    day = pd.to_datetime(ctx["occurred_at"], utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    per_day = {d: v["bot_share"] for d, v in sorted(_share_by(day, np.asarray(is_bot)).items())}
    known = frozenset(int(k) for k in reference["by_asn"])
    candidates = candidate_scanners(ctx, feats, is_bot, asn, th, known)
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
        "events": int(len(feats)),
        "thresholds": asdict(th),
        "alerts": alerts,
        "feature_psi": dict(sorted(feature_psi.items(), key=lambda kv: -kv[1])),
        "score_psi": score_psi,
        "bot_share": float(np.mean(is_bot)) if len(is_bot) else 0.0,
        "reference_bot_share": reference["bot_share"],
        "by_vendor_flag": _share_by(
            feats["net_security_vendor"].to_numpy() > 0, np.asarray(is_bot)
        ),
        "reference_by_vendor_flag": reference["by_vendor_flag"],
        "networks": networks[:50],
        "bot_share_by_day": per_day,
        "candidate_scanners": candidates,
    }
