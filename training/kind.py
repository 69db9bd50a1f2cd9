"""The kind head: fitting it on the labelled bots' ``bot_kind`` and evaluating it per kind.

The head (``scoring.kind.KindHead``) is a LightGBM multiclass booster over the bot model's own
features. It is trained on every labelled bot with a kind, whatever the bot model says about it;
in scoring it runs only on the events the bot model flags. The evaluation follows scoring: an
event's predicted kind is empty unless the model flags it, so the confusion matrix shows both
missed bots (true kind -> person) and wrong kinds.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from contract.schema import BOT_KINDS
from core.settings import Settings
from features.definitions import FEATURE_NAMES, LOOKAHEAD_FEATURES
from labelling.training import TRAIN_KIND
from scoring.kind import NO_KIND, KindHead
from scoring.model import BotModel
from training.report import json_ready

KIND_PARAMS: dict[str, Any] = {
    "objective": "multiclass",
    "learning_rate": 0.3,
    "num_leaves": 7,  # kinds differ in plain signals (network, UA, timing): small trees do
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
    "seed": 17,
}
KIND_ROUNDS = 15  # at most (60 trees for 4 kinds); early stopping on the latest-sent fifth
# 15 rounds at 0.3 give the kinds of 40 at 0.15 on the shifted world (4,254 v 4,259 scanners
# right) at 1.8x the rows/s: the head runs on every flagged event of a batch.
KIND_EARLY_STOPPING = 3
PERSON = "person"  # the confusion matrix's name for "not a bot" (an empty bot_kind)


def fit_kind(prep: Any, settings: Settings, exclude: np.ndarray | None = None) -> KindHead | None:
    """Fit the kind head on ``prep``'s labelled bots outside the rows ``exclude`` (the test
    split). None when the data name fewer than two kinds (real data carry no ``bot_kind``): the
    model then gives its bots the kind of their top reason."""
    ctx = prep.ctx
    # weak labels' kinds when the model learns weak labels (the data's own judge it)
    column = TRAIN_KIND if TRAIN_KIND in ctx.columns else "bot_kind"
    if column not in ctx.columns:
        return None
    kind = ctx[column].to_numpy(dtype=object)
    use = np.asarray(prep.y, dtype=bool) & pd.Series(kind).isin(BOT_KINDS).to_numpy()
    if prep.weight is not None:
        use &= prep.weight > 0
    if exclude is not None:
        use[np.asarray(exclude, dtype=np.int64)] = False
    rows = np.flatnonzero(use)
    classes = [k for k in BOT_KINDS if (kind[rows] == k).any()]
    if len(classes) < 2:
        return None
    # The latest-sent fifth stops the boosting: validation by time, as the bot model's.
    sent = pd.to_datetime(ctx["sent_at"].iloc[rows], utc=True).to_numpy()
    rows = rows[np.argsort(sent, kind="stable")]
    cut = int(len(rows) * 0.8)
    tr, va = rows[:cut], rows[cut:]
    code = {k: i for i, k in enumerate(classes)}
    y = np.array([code.get(k, -1) for k in kind])  # -1: no known kind (never in tr or va)
    # Every causal feature, network flags included: which kind a bot is may follow from whose
    # network it uses (Google's link previews, a mail-security vendor's scanners), even where
    # whether it is a bot must not (features.definitions.NOT_MODEL_INPUTS). Not the look-ahead
    # ones: the head names the kind of provisional answers too, which have none (with them, a
    # small world's link previews were called scanners: recall 0.86 in the quality test).
    names = [n for n in FEATURE_NAMES if n not in LOOKAHEAD_FEATURES]
    X = prep.features[names].to_numpy(dtype=np.float64)
    params = {**KIND_PARAMS, "num_class": len(classes), "num_threads": settings.threads}
    dtrain = lgb.Dataset(X[tr], y[tr], feature_name=names, free_raw_data=False)
    valid = [lgb.Dataset(X[va], y[va], reference=dtrain)] if len(va) else []
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=KIND_ROUNDS,
        valid_sets=valid,
        callbacks=[lgb.early_stopping(KIND_EARLY_STOPPING, verbose=False)] if valid else [],
    )
    best = booster.best_iteration or None
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    channel = ctx["channel"].to_numpy(dtype=object)[rows]
    seen = {
        str(ch): [k for k in classes if (kind[rows][channel == ch] == k).any()]
        for ch in pd.unique(channel)
    }
    return KindHead(booster, classes, seen, settings.threads)


def predicted_kinds(model: BotModel, ctx: pd.DataFrame, features: pd.DataFrame) -> np.ndarray:
    """``bot_kind`` of each row as scoring gives it ("" for events the model does not flag)."""
    scored = model.score_block(
        features.to_numpy(dtype=np.float64).T,
        ctx["channel"].to_numpy(dtype=object),
        ctx["type"].to_numpy(dtype=object),
        with_reasons=model.kind is None,  # without a head, the kind comes from the top reason
        names=list(features.columns),
    )
    return scored.bot_kind


def confusion_by_kind(true_kind: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Confusion matrix of true against predicted kind (people as ``person``), with recall and
    precision per kind, and per bot kind the share of its flagged bots given the right kind."""
    truth = np.array([PERSON if pd.isna(k) or k == NO_KIND else str(k) for k in true_kind])
    pred = np.array([PERSON if k == NO_KIND else str(k) for k in predicted])
    labels = [k for k in (*BOT_KINDS, PERSON) if (truth == k).any() or (pred == k).any()]
    matrix = [[int(((truth == t) & (pred == p)).sum()) for p in labels] for t in labels]
    per_kind: dict[str, dict[str, float]] = {}
    for i, k in enumerate(labels):
        n_true, n_pred = sum(matrix[i]), sum(row[i] for row in matrix)
        per_kind[k] = {
            "n": n_true,
            "recall": matrix[i][i] / n_true if n_true else float("nan"),
            "precision": matrix[i][i] / n_pred if n_pred else float("nan"),
        }
        if k != PERSON:
            # The head's own share: right kind among this kind's bots that the model flags.
            missed = matrix[i][labels.index(PERSON)] if PERSON in labels else 0
            flagged = n_true - missed
            per_kind[k]["right_kind_of_flagged"] = (
                matrix[i][i] / flagged if flagged else float("nan")
            )
    return {"labels": labels, "matrix": matrix, "per_kind": per_kind}


def evaluate_kind(model: BotModel, prep: Any, idx: np.ndarray) -> dict[str, Any] | None:
    """The confusion matrix per kind of ``model`` on rows ``idx`` of ``prep``, as the JSON that
    is saved and logged (a rate of nothing as None: ``json_ready``); None when the data carry
    no ``bot_kind``."""
    ctx = prep.ctx.iloc[idx]
    if "bot_kind" not in ctx.columns:
        return None
    kinds = predicted_kinds(model, ctx, prep.features.iloc[idx])
    report = confusion_by_kind(ctx["bot_kind"].to_numpy(dtype=object), kinds)
    report["head"] = "model" if model.kind is not None else "top reason (no kind head)"
    return dict(json_ready(report))


def log_kind(model: BotModel, prep: Any, idx: np.ndarray) -> dict[str, Any] | None:
    """Evaluate the kind head on rows ``idx`` and log it to the active MLflow run
    (``kind_confusion.json`` and ``test.kind.<kind>.recall|precision``)."""
    import mlflow

    report = evaluate_kind(model, prep, idx)
    if report is not None:
        mlflow.log_dict(report, "kind_confusion.json")
        mlflow.log_metrics(kind_metrics(report, "test.kind."))
    return report


def kind_metrics(report: dict[str, Any], prefix: str = "kind.") -> dict[str, float]:
    """Per-kind recall and precision as flat MLflow metrics."""
    return {
        f"{prefix}{k}.{m}": float(v[m])
        for k, v in report["per_kind"].items()
        for m in ("recall", "precision", "right_kind_of_flagged")
        if v.get(m) is not None and np.isfinite(v[m])
    }


def print_kind_report(report: dict[str, Any] | None, console: Any) -> None:
    """The confusion matrix per kind as a rich table (rows: true kind; columns: predicted)."""
    from rich.table import Table

    if report is None:
        console.print("bot kind: the data carry no bot_kind labels")
        return
    labels = report["labels"]
    t = Table(
        title=f"Bot kind confusion (rows true, columns predicted; kind from {report['head']})"
    )
    t.add_column("true \\ predicted")
    for k in labels:
        t.add_column(k, justify="right")
    t.add_column("recall", justify="right")
    for k, row in zip(labels, report["matrix"], strict=True):
        recall = report["per_kind"][k]["recall"]  # None: no event of that kind
        t.add_row(k, *(f"{v:,}" for v in row), "-" if recall is None else f"{recall:.4f}")
    console.print(t)
