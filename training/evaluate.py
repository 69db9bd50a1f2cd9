"""Quality report against labels: ranking, thresholds, bot kinds, people, and metric-level error.

The metric-level error is what a tenant feels: per-campaign open rate and CTR with the filter,
against the labels' truth, next to no filter and a UA-list-only baseline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import average_precision_score

from scoring.model import MIN_CUT, BotModel, vendor_rows
from training.fit import Prepared, channel_type_rows, split_times, worlds
from training.report import (
    CampaignError,
    ChannelTypeQuality,
    CountedRates,
    EvaluationReport,
    FamilyRate,
    PrecisionRecall,
    Quality,
    RateError,
    Rates,
)

UA_LIST_FLAGS = (
    "ua_crawler",
    "ua_http_library",
    "ua_headless",
    "ua_link_preview",
    "ua_empty",
    "ua_bare_mozilla",
    "ua_mail_proxy",
)


def ua_list_baseline(features: pd.DataFrame) -> np.ndarray:
    """What a public User-Agent list flags: crawlers, libraries, previews, proxies, bare or empty UAs."""
    return np.asarray(features[list(UA_LIST_FLAGS)].to_numpy().astype(bool).any(axis=1))


def _pr(y: np.ndarray, pred: np.ndarray) -> PrecisionRecall:
    tp = int((y & pred).sum())
    fp = int((~y & pred).sum())
    fn = int((y & ~pred).sum())
    return PrecisionRecall(
        precision=tp / (tp + fp) if tp + fp else float("nan"),
        recall=tp / (tp + fn) if tp + fn else float("nan"),
        n=int(len(y)),
        bots=int(y.sum()),
    )


def _pr_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Average precision; NaN when only one class is present."""
    return float(average_precision_score(y, proba)) if y.any() and (~y).any() else float("nan")


def campaign_rates(
    ctx: pd.DataFrame, counted: np.ndarray, delivered: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per-campaign open rate and CTR (PRODUCT.md definitions) counting only ``counted`` events.

    ``delivered``: the campaigns' delivered messages, events or not (the rates' denominator;
    None: the messages of ``ctx``'s events, which leaves out every message without one).
    Campaigns and messages are (tenant_id, id): two tenants may use the same ids. Only campaigns
    with an event among ``ctx``'s (labelled) rows are rated: one without (a tenant the weak-label
    file does not label) read 0 against a "truth" of 0, and halved the mean error of the rest."""
    campaign = ["tenant_id", "campaign_id"]
    message = ["tenant_id", "message_id"]
    in_campaign = ctx["campaign_id"].notna().to_numpy() & ctx["delivered_at"].notna().to_numpy()
    ev = ctx.loc[counted & in_campaign, [*campaign, "message_id", "type"]]
    if delivered is None:
        delivered = ctx[in_campaign]
    else:
        labelled = pd.MultiIndex.from_frame(ctx.loc[in_campaign, campaign])
        delivered = delivered[pd.MultiIndex.from_frame(delivered[campaign]).isin(labelled)]
    msgs = delivered[[*campaign, "message_id", "channel"]].drop_duplicates(message)
    opened = ev.drop_duplicates(message).groupby(campaign).size()  # a click implies an open
    clicked = ev[ev["type"] == "click"].drop_duplicates(message).groupby(campaign).size()
    out = pd.DataFrame({"delivered": msgs.groupby(campaign).size()})
    out["open_rate"] = opened.reindex(out.index, fill_value=0) / out["delivered"]
    out["ctr"] = clicked.reindex(out.index, fill_value=0) / out["delivered"]
    channel = msgs.drop_duplicates(campaign).set_index(campaign)["channel"]
    out.loc[channel.reindex(out.index) == "sms", "open_rate"] = np.nan
    return out


def _rate_error(truth: pd.DataFrame, est: pd.DataFrame) -> RateError:
    res: dict[str, float] = {}
    for col in ("ctr", "open_rate"):
        err = (est[col] - truth[col]).abs().dropna() * 100
        res[f"{col}_mae_pp"] = float(err.mean()) if len(err) else float("nan")
        res[f"{col}_max_pp"] = float(err.max()) if len(err) else float("nan")
    return RateError(**res)


def _share(flags: np.ndarray, rows: np.ndarray) -> float:
    """The share of ``rows`` flagged (NaN for no row)."""
    return float(flags[rows].mean()) if rows.any() else float("nan")


def _by_family(is_bot: np.ndarray, fams: np.ndarray, rows: np.ndarray) -> dict[str, FamilyRate]:
    """The flagged share of ``rows`` per family."""
    return {
        str(f): FamilyRate(model=float(is_bot[m].mean()), n=int(m.sum()))
        for f in sorted(set(fams[rows]))
        if (m := rows & (fams == f)).any()
    }


def evaluation_report(
    ctx: pd.DataFrame,
    features: pd.DataFrame,
    proba: np.ndarray,
    is_bot: np.ndarray,
    delivered: pd.DataFrame | None = None,
) -> EvaluationReport:
    """The full report (logged to MLflow, printed, saved, read by the gate); ``delivered``: the
    campaign messages the rates divide by (:func:`campaign_rates`)."""
    y = ctx["label"].to_numpy() == "bot"
    is_bot = np.asarray(is_bot, bool)
    base = ua_list_baseline(features)
    human = ~y
    kinds = (
        ctx["bot_kind"].fillna("none").to_numpy()
        if "bot_kind" in ctx
        else np.full(len(ctx), "none")
    )
    fams = ctx["family"].fillna("unknown").astype(str).to_numpy() if "family" in ctx else None
    proxy = human & features["ua_mail_proxy"].to_numpy().astype(bool)
    truth = campaign_rates(ctx, human, delivered)
    return EvaluationReport(
        events=int(len(y)),
        bot_share=float(y.mean()) if len(y) else float("nan"),
        pr_auc=_pr_auc(y, proba),
        overall=Quality(_pr(y, is_bot), _pr(y, base)),
        human_fpr=Rates(_share(is_bot, human), _share(base, human)),
        by_channel_type={
            f"{ch}:{ty}": ChannelTypeQuality(
                _pr_auc(y[idx], proba[idx]), _pr(y[idx], is_bot[idx]), _pr(y[idx], base[idx])
            )
            for (ch, ty), idx in channel_type_rows(ctx).items()
        },
        by_channel={
            str(ch): Quality(_pr(y[idx], is_bot[idx]), _pr(y[idx], base[idx]))
            for ch, idx in ctx.groupby("channel").indices.items()
        },
        recall_by_bot_kind={
            str(k): CountedRates(
                model=float(is_bot[(kinds == k) & y].mean()),
                ua_list=float(base[(kinds == k) & y].mean()),
                n=int(((kinds == k) & y).sum()),
            )
            for k in sorted(set(kinds[y]))
        },
        # The simulator's family tag (evaluation only): how people reached us, which bot it was.
        fpr_by_family=None if fams is None else _by_family(is_bot, fams, human),
        recall_by_family=None if fams is None else _by_family(is_bot, fams, y),
        proxy_open_fpr=CountedRates(_share(is_bot, proxy), _share(base, proxy), int(proxy.sum())),
        campaign_metric_error=CampaignError(
            campaigns=int(len(truth)),
            model=_rate_error(truth, campaign_rates(ctx, ~is_bot, delivered)),
            no_filter=_rate_error(truth, campaign_rates(ctx, np.ones(len(ctx), bool), delivered)),
            ua_list=_rate_error(truth, campaign_rates(ctx, ~base, delivered)),
        ),
    )


class Evaluation(NamedTuple):
    """A model's report on some rows, with its calibrated scores and verdicts there."""

    report: EvaluationReport
    proba: np.ndarray
    is_bot: np.ndarray


class _Scored(NamedTuple):
    """Rows of a :class:`Prepared`, scored, with the campaign messages their rates divide by."""

    ctx: pd.DataFrame
    feats: pd.DataFrame
    proba: np.ndarray
    delivered: pd.DataFrame | None


def _scored(model: BotModel, prep: Prepared, idx: np.ndarray) -> _Scored:
    ctx = prep.ctx.iloc[idx]
    feats = prep.features.iloc[idx]
    return _Scored(ctx, feats, model.predict_proba(feats), _delivered_for(prep, ctx))


def evaluate_model(model: BotModel, prep: Prepared, idx: np.ndarray) -> Evaluation:
    """Evaluation of ``model`` on rows ``idx`` of ``prep``."""
    ctx, feats, proba, delivered = _scored(model, prep, idx)
    is_bot = model.flags(proba, ctx, feats)
    return Evaluation(evaluation_report(ctx, feats, proba, is_bot, delivered), proba, is_bot)


def reports_at_cuts(
    model: BotModel,
    prep: Prepared,
    idx: np.ndarray,
    channel: str,
    event_type: str,
    cuts: Sequence[float],
) -> list[EvaluationReport]:
    """Reports of ``model`` on rows ``idx``, one per cut of ``cuts`` given to the events of
    ``channel`` and ``event_type`` (floored at ``MIN_CUT``, as every cut is), every other event
    at the model's own threshold: the rows are scored once for all the cuts."""
    ctx, feats, proba, delivered = _scored(model, prep, idx)
    ch, ty = ctx["channel"].to_numpy(), ctx["type"].to_numpy()
    vendor = vendor_rows(feats)
    own = model.threshold_for(ch, ty, vendor)
    moved = (ch == channel) & (ty == event_type)
    # the moved cut, still raised where the model raises it (a security vendor's address)
    raised = own > model.threshold_for(ch, ty)
    return [
        evaluation_report(
            ctx,
            feats,
            proba,
            proba
            >= np.where(moved, np.where(raised, np.maximum(own, cut), max(cut, MIN_CUT)), own),
            delivered,
        )
        for cut in cuts
    ]


def _delivered_for(prep: Prepared, ctx: pd.DataFrame) -> pd.DataFrame | None:
    """The campaign messages the rates of rows ``ctx`` divide by: all of them for all rows;
    for a split (by send time, whole messages: :func:`training.fit.split_by_send_time`), those
    sent in the split's own window, from the cut before its rows to the cut after them: a
    message sent then without any event counts too. Each world mixed in has its own cuts."""
    if prep.messages is None:
        return None
    if len(ctx) == len(prep.ctx):
        return prep.messages
    everything, messages = worlds(prep.ctx), worlds(prep.messages)
    keep = np.zeros(len(prep.messages), dtype=bool)
    for world, rows in worlds(ctx).items():
        sent = pd.to_datetime(ctx["sent_at"].iloc[rows], utc=True)
        sent_of = messages.get(world, np.arange(0))
        at = pd.to_datetime(prep.messages["sent_at"].iloc[sent_of], utc=True)
        cuts = split_times(prep.ctx.iloc[everything[world]])
        window = np.ones(len(at), dtype=bool)
        if (lo := max((c for c in cuts if c <= sent.min()), default=None)) is not None:
            window &= (at >= lo).to_numpy()
        if (hi := min((c for c in cuts if c > sent.max()), default=None)) is not None:
            window &= (at < hi).to_numpy()
        keep[sent_of[window]] = True
    return prep.messages.loc[keep]


def rows_fingerprint(prep: Prepared, rows: np.ndarray) -> str:
    """A content hash of rows ``rows`` of ``prep`` as an evaluation reads them: the events
    (labels included), their features, labels and weights, and the campaign messages their
    rates divide by. ``botfilter promote`` compares it with the one logged at training before
    it judges a candidate's logged report against a champion evaluated on rebuilt rows."""
    ctx = prep.ctx.iloc[rows]
    parts = [
        ctx,
        prep.features.iloc[rows],
        pd.DataFrame(
            {"y": prep.y[rows], "weight": 1.0 if prep.weight is None else prep.weight[rows]}
        ),
    ]
    delivered = _delivered_for(prep, ctx)
    if delivered is not None:
        parts.append(delivered)
    digest = hashlib.sha256()
    for part in parts:
        digest.update("\x1f".join(map(str, part.columns)).encode())
        digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def flat_metrics(report: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten a report's dict into MLflow metric names
    (``by_channel_type.email_open.model.recall``...)."""
    out: dict[str, float] = {}
    for k, v in report.items():
        key = f"{prefix}{k}".replace(":", "_")
        if isinstance(v, Mapping):
            out.update(flat_metrics(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            out[key] = float(v)
    return out


def print_report(report: EvaluationReport, console: Console) -> None:
    """Rich tables of the report: per channel x type, per bot kind, metric-level error."""
    console.print(
        f"[bold]events[/] {report.events:,}  bot share {report.bot_share:.1%}  "
        f"PR-AUC [bold]{report.pr_auc:.4f}[/]"
    )
    if report.test_worlds is not None:
        held = ", ".join(f"{w.events:,} of {w.world}" for w in report.test_worlds)
        console.print(f"test split: {held}", markup=False)
    t = Table(title="Precision / recall at the thresholds (model | UA list)")
    for c in (
        "channel:type",
        "n",
        "bots",
        "PR-AUC",
        "precision",
        "recall",
        "UA precision",
        "UA recall",
    ):
        t.add_column(c, justify="right")
    for g, r in report.by_channel_type.items():
        m, u = r.model, r.ua_list
        t.add_row(
            g,
            f"{m.n:,}",
            f"{m.bots:,}",
            f"{r.pr_auc:.4f}",
            f"{m.precision:.4f}",
            f"{m.recall:.4f}",
            f"{u.precision:.4f}",
            f"{u.recall:.4f}",
        )
    console.print(t)
    k = Table(title="Recall per bot kind")
    for c in ("bot_kind", "n", "model", "UA list"):
        k.add_column(c, justify="right")
    for kind, kr in report.recall_by_bot_kind.items():
        k.add_row(kind, f"{kr.n:,}", f"{kr.model:.4f}", f"{kr.ua_list:.4f}")
    console.print(k)
    console.print(
        f"false-positive rate on people: model {report.human_fpr.model:.4%}, "
        f"UA list {report.human_fpr.ua_list:.4%}"
    )
    if report.fpr_by_family is not None:
        f = Table(title="People flagged as bots, per family (false-positive rate)")
        for c in ("family", "n", "model FPR"):
            f.add_column(c, justify="right")
        for fam, fr in report.fpr_by_family.items():
            f.add_row(fam, f"{fr.n:,}", f"{fr.model:.2%}")
        console.print(f)
    p = report.proxy_open_fpr
    console.print(
        f"false-positive rate on Gmail/Yahoo proxy opens (n={p.n:,}): model {p.model:.4%}, "
        f"UA list {p.ua_list:.4%}"
    )
    err = report.campaign_metric_error
    e = Table(
        title=f"Per-campaign metric error vs truth, percentage points ({err.campaigns} campaigns)"
    )
    for c in ("filter", "CTR MAE", "CTR max", "open rate MAE", "open rate max"):
        e.add_column(c, justify="right")
    for name, row in (("model", err.model), ("ua_list", err.ua_list), ("no_filter", err.no_filter)):
        e.add_row(
            name,
            f"{row.ctr_mae_pp:.3f}",
            f"{row.ctr_max_pp:.3f}",
            f"{row.open_rate_mae_pp:.3f}",
            f"{row.open_rate_max_pp:.3f}",
        )
    console.print(e)
