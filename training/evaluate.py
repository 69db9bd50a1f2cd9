"""Quality report against labels: ranking, thresholds, bot kinds, people, and metric-level error.

The metric-level error is what a tenant feels: per-campaign open rate and CTR with the filter,
against the labels' truth, next to no filter and a UA-list-only baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

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
    return features[list(UA_LIST_FLAGS)].to_numpy().astype(bool).any(axis=1)


def _pr(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = int((y & pred).sum())
    fp = int((~y & pred).sum())
    fn = int((y & ~pred).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "n": int(len(y)),
        "bots": int(y.sum()),
    }


def campaign_rates(ctx: pd.DataFrame, counted: np.ndarray) -> pd.DataFrame:
    """Per-campaign open rate and CTR (PRODUCT.md definitions) counting only ``counted`` events."""
    ev = ctx.loc[
        counted & ctx["campaign_id"].notna().to_numpy() & ctx["delivered_at"].notna().to_numpy(),
        ["campaign_id", "message_id", "type"],
    ]
    msgs = ctx[ctx["campaign_id"].notna() & ctx["delivered_at"].notna()][
        ["campaign_id", "message_id", "channel"]
    ].drop_duplicates("message_id")
    delivered = msgs.groupby("campaign_id").size()
    opened = (
        ev.drop_duplicates("message_id").groupby("campaign_id").size()
    )  # a click implies an open
    clicked = ev[ev["type"] == "click"].drop_duplicates("message_id").groupby("campaign_id").size()
    out = pd.DataFrame({"delivered": delivered})
    out["open_rate"] = opened.reindex(out.index, fill_value=0) / out["delivered"]
    out["ctr"] = clicked.reindex(out.index, fill_value=0) / out["delivered"]
    channel = msgs.drop_duplicates("campaign_id").set_index("campaign_id")["channel"]
    out.loc[channel.reindex(out.index) == "sms", "open_rate"] = np.nan
    return out


def _rate_error(truth: pd.DataFrame, est: pd.DataFrame) -> dict[str, float]:
    res: dict[str, float] = {}
    for col in ("ctr", "open_rate"):
        err = (est[col] - truth[col]).abs().dropna() * 100
        res[f"{col}_mae_pp"] = float(err.mean()) if len(err) else float("nan")
        res[f"{col}_max_pp"] = float(err.max()) if len(err) else float("nan")
    return res


def evaluation_report(
    ctx: pd.DataFrame, features: pd.DataFrame, proba: np.ndarray, is_bot: np.ndarray
) -> dict[str, Any]:
    """The full report as a nested dict of plain numbers (logged to MLflow, printed, saved)."""
    y = ctx["label"].to_numpy() == "bot"
    is_bot = np.asarray(is_bot, bool)
    base = ua_list_baseline(features)
    human = ~y
    report: dict[str, Any] = {
        "events": int(len(y)),
        "bot_share": float(y.mean()) if len(y) else float("nan"),
        "pr_auc": float(average_precision_score(y, proba))
        if y.any() and human.any()
        else float("nan"),
        "overall": {"model": _pr(y, is_bot), "ua_list": _pr(y, base)},
        "human_fpr": {
            "model": float(is_bot[human].mean()) if human.any() else float("nan"),
            "ua_list": float(base[human].mean()) if human.any() else float("nan"),
        },
    }
    groups: dict[str, Any] = {}
    for (ch, ty), idx in ctx.groupby(["channel", "type"]).indices.items():
        yy = y[idx]
        groups[f"{ch}:{ty}"] = {
            "pr_auc": float(average_precision_score(yy, proba[idx]))
            if yy.any() and (~yy).any()
            else float("nan"),
            "model": _pr(yy, is_bot[idx]),
            "ua_list": _pr(yy, base[idx]),
        }
    report["by_channel_type"] = groups
    report["by_channel"] = {
        ch: {"model": _pr(y[idx], is_bot[idx]), "ua_list": _pr(y[idx], base[idx])}
        for ch, idx in ctx.groupby("channel").indices.items()
    }
    kinds = (
        ctx["bot_kind"].fillna("none").to_numpy()
        if "bot_kind" in ctx
        else np.full(len(ctx), "none")
    )
    report["recall_by_bot_kind"] = {
        str(k): {
            "model": float(is_bot[(kinds == k) & y].mean()),
            "ua_list": float(base[(kinds == k) & y].mean()),
            "n": int(((kinds == k) & y).sum()),
        }
        for k in sorted(set(kinds[y]))
    }
    if "family" in ctx:
        # The simulator's family tag (evaluation only): how people reached us, which bot it was.
        fams = ctx["family"].fillna("unknown").astype(str).to_numpy()
        report["fpr_by_family"] = {
            str(f): {"model": float(is_bot[m].mean()), "n": int(m.sum())}
            for f in sorted(set(fams[human]))
            if (m := human & (fams == f)).any()
        }
        report["recall_by_family"] = {
            str(f): {"model": float(is_bot[m].mean()), "n": int(m.sum())}
            for f in sorted(set(fams[y]))
            if (m := y & (fams == f)).any()
        }
    proxy = human & features["ua_mail_proxy"].to_numpy().astype(bool)
    report["proxy_open_fpr"] = {
        "model": float(is_bot[proxy].mean()) if proxy.any() else float("nan"),
        "ua_list": float(base[proxy].mean()) if proxy.any() else float("nan"),
        "n": int(proxy.sum()),
    }
    truth = campaign_rates(ctx, human)
    report["campaign_metric_error"] = {
        "campaigns": int(len(truth)),
        "model": _rate_error(truth, campaign_rates(ctx, ~is_bot)),
        "no_filter": _rate_error(truth, campaign_rates(ctx, np.ones(len(ctx), bool))),
        "ua_list": _rate_error(truth, campaign_rates(ctx, ~base)),
    }
    return report


def flat_metrics(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten a report into MLflow metric names (``by_channel_type.email:open.model.recall``...)."""
    out: dict[str, float] = {}
    for k, v in report.items():
        key = f"{prefix}{k}".replace(":", "_")
        if isinstance(v, dict):
            out.update(flat_metrics(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            out[key] = float(v)
    return out


def print_report(report: dict[str, Any], console) -> None:
    """Rich tables of the report: per channel x type, per bot kind, metric-level error."""
    from rich.table import Table

    console.print(
        f"[bold]events[/] {report['events']:,}  bot share {report['bot_share']:.1%}  PR-AUC [bold]{report['pr_auc']:.4f}[/]"
    )
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
    for g, r in report["by_channel_type"].items():
        m, u = r["model"], r["ua_list"]
        t.add_row(
            g,
            f"{m['n']:,}",
            f"{m['bots']:,}",
            f"{r['pr_auc']:.4f}",
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{u['precision']:.4f}",
            f"{u['recall']:.4f}",
        )
    console.print(t)
    k = Table(title="Recall per bot kind")
    for c in ("bot_kind", "n", "model", "UA list"):
        k.add_column(c, justify="right")
    for kind, r in report["recall_by_bot_kind"].items():
        k.add_row(kind, f"{r['n']:,}", f"{r['model']:.4f}", f"{r['ua_list']:.4f}")
    console.print(k)
    console.print(
        f"false-positive rate on people: model {report['human_fpr']['model']:.4%}, UA list {report['human_fpr']['ua_list']:.4%}"
    )
    if "fpr_by_family" in report:
        f = Table(title="People flagged as bots, per family (false-positive rate)")
        for c in ("family", "n", "model FPR"):
            f.add_column(c, justify="right")
        for fam, r in report["fpr_by_family"].items():
            f.add_row(fam, f"{r['n']:,}", f"{r['model']:.2%}")
        console.print(f)
    p = report["proxy_open_fpr"]
    console.print(
        f"false-positive rate on Gmail/Yahoo proxy opens (n={p['n']:,}): model {p['model']:.4%}, UA list {p['ua_list']:.4%}"
    )
    e = Table(
        title=f"Per-campaign metric error vs truth, percentage points ({report['campaign_metric_error']['campaigns']} campaigns)"
    )
    for c in ("filter", "CTR MAE", "CTR max", "open rate MAE", "open rate max"):
        e.add_column(c, justify="right")
    for name in ("model", "ua_list", "no_filter"):
        r = report["campaign_metric_error"][name]
        e.add_row(
            name,
            f"{r['ctr_mae_pp']:.3f}",
            f"{r['ctr_max_pp']:.3f}",
            f"{r['open_rate_mae_pp']:.3f}",
            f"{r['open_rate_max_pp']:.3f}",
        )
    console.print(e)
