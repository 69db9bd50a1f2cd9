"""Weak labels for a data directory: votes of every labelling function, the label model's
P(bot), and a report of each function's coverage, overlaps, conflicts and estimated accuracy."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from contract.schema import BOT_KINDS
from core.errors import BotfilterError
from features.pipeline import Enrichers, build_features, event_context
from labelling.functions import HUMAN_KINDS, LABELLING_FUNCTIONS, LF_NAMES, apply_all, targets
from labelling.model import ABSTAIN, LabelModel

CLASSES: tuple[str, ...] = (*HUMAN_KINDS, *BOT_KINDS)
VOTE_PREFIX = "lf_"


@dataclass
class WeakLabels:
    """The weak labels of a set of events and how they came about."""

    ctx: pd.DataFrame
    votes: np.ndarray  # (events x functions) -1/0/1
    proba: np.ndarray  # P(bot)
    model: LabelModel

    def table(self) -> pd.DataFrame:
        """One row per event: event_id, tenant_id, label_bot_probability and each vote."""
        out = pd.DataFrame(
            {
                "event_id": self.ctx["event_id"].to_numpy(),
                "tenant_id": self.ctx["tenant_id"].to_numpy(),
                "label_bot_probability": self.proba,
            }
        )
        for j, name in enumerate(LF_NAMES):
            out[VOTE_PREFIX + name] = self.votes[:, j]
        return out

    def report(self, truth: np.ndarray | None = None) -> dict[str, Any]:
        """Per function: polarity, coverage, overlaps, conflicts, estimated accuracy.

        ``truth`` (bool, bot) adds each function's true accuracy, for simulated worlds only.
        """
        return lf_report(self.votes, self.model, self.proba, truth)


def weak_labels(ctx: pd.DataFrame, feats: pd.DataFrame) -> WeakLabels:
    """Votes of every registered function and the label model fitted on them."""
    votes = apply_all(ctx, feats)
    model = LabelModel(classes=len(CLASSES), human_classes=len(HUMAN_KINDS))
    model.fit(votes, targets(CLASSES))
    return WeakLabels(ctx, votes, model.predict_proba(votes), model)


def lf_report(
    votes: np.ndarray, model: LabelModel, proba: np.ndarray, truth: np.ndarray | None = None
) -> dict[str, Any]:
    """The numbers behind the report table (JSON-friendly)."""
    n = len(votes)
    fired = votes != ABSTAIN
    n_fired = fired.sum(axis=1)
    acc = model.accuracy()
    rows = []
    for j, lf in enumerate(LABELLING_FUNCTIONS):
        f = fired[:, j]
        others = np.delete(votes, j, axis=1)
        other_fired = others != ABSTAIN
        overlap = f & other_fired.any(axis=1)
        conflict = f & ((other_fired & (others != lf.polarity)).any(axis=1))
        row = {
            "name": lf.name,
            "vote": "bot" if lf.polarity == 1 else "human",
            "kind": lf.kind or "",
            "description": lf.description,
            "events": int(f.sum()),
            "coverage": float(f.mean()) if n else 0.0,
            "overlaps": float(overlap.sum() / max(f.sum(), 1)),
            "conflicts": float(conflict.sum() / max(f.sum(), 1)),
            # A function that never fired has no accuracy (the model's value is its prior).
            "estimated_accuracy": None if np.isnan(acc[j]) or not f.any() else float(acc[j]),
        }
        if truth is not None:
            right = truth[f] == (lf.polarity == 1)
            row["true_accuracy"] = float(right.mean()) if f.any() else None
        rows.append(row)
    summary = {
        "events": int(n),
        "covered": float((n_fired > 0).mean()) if n else 0.0,
        "conflicting": float(
            ((votes == 1).any(axis=1) & (votes == 0).any(axis=1)).mean() if n else 0.0
        ),
        "estimated_bot_share": model.bot_prior,
        "labelled_bot_share": float((proba >= 0.5).mean()) if n else 0.0,
        "class_prior": dict(zip(CLASSES, map(float, model.prior), strict=True)),
        "em_iterations": model.iterations,
        "em_converged": model.converged,
    }
    if truth is not None and n:
        summary["true_bot_share"] = float(truth.mean())
        summary["label_accuracy"] = float(((proba >= 0.5) == truth).mean())
    return {"summary": summary, "functions": rows}


def print_report(report: dict[str, Any], console) -> None:  # noqa: ANN001
    """The report as a rich table."""
    truth = any("true_accuracy" in r for r in report["functions"])
    table = Table(title="labelling functions")
    for col in ("function", "vote", "events", "cover", "overlap", "conflict", "est. acc"):
        table.add_column(
            col, justify="left" if col in ("function", "vote") else "right", no_wrap=True
        )
    if truth:
        table.add_column("true acc", justify="right", no_wrap=True)
    for r in report["functions"]:
        est = r["estimated_accuracy"]
        cells = [
            r["name"],
            r["vote"],
            f"{r['events']:,}",
            f"{r['coverage']:.1%}",
            f"{r['overlaps']:.1%}",
            f"{r['conflicts']:.1%}",
            "-" if est is None else f"{est:.3f}",
        ]
        if truth:
            t = r.get("true_accuracy")
            cells.append("-" if t is None else f"{t:.3f}")
        table.add_row(*cells)
    console.print(table)
    s = report["summary"]
    line = (
        f"{s['events']:,} events; {s['covered']:.1%} covered by a function, "
        f"{s['conflicting']:.1%} with conflicting votes; estimated bot share "
        f"{s['estimated_bot_share']:.1%} (labelled {s['labelled_bot_share']:.1%})"
    )
    if "label_accuracy" in s:
        line += f"; against the hidden labels: accuracy {s['label_accuracy']:.2%}"
    console.print(line)


def label_directory(validated, enrichers=None) -> WeakLabels:  # noqa: ANN001
    """Weak labels of a validated data directory's clean events (labels, if any, are ignored)."""
    ctx = event_context(validated.messages, validated.events).reset_index(drop=True)
    feats = build_features(ctx, enrichers or Enrichers.load())
    return weak_labels(ctx, feats)


def hidden_truth(ctx: pd.DataFrame) -> np.ndarray | None:
    """The simulated world's own labels (bool, bot) when every event has one, else None."""
    if "label" not in ctx or ctx["label"].isna().any():
        return None
    return (ctx["label"] == "bot").to_numpy()


def write_labels(table: pd.DataFrame, path) -> None:  # noqa: ANN001
    """Write the weak-label table as Parquet or CSV by extension."""
    if path.suffix not in (".parquet", ".csv"):
        raise BotfilterError(f"{path}: the labels file must end in .parquet or .csv")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            table.to_parquet(path, index=False)
        else:
            table.to_csv(path, index=False)
    except OSError as exc:
        raise BotfilterError(f"cannot write {path}: {exc}") from exc


def hide_labels(src: Path, dst: Path) -> Path:
    """A copy of a data directory whose events carry no label or bot_kind."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.parquet"):
        if f.name == "events.parquet":
            events = pd.read_parquet(f)
            events.drop(columns=["label", "bot_kind"]).to_parquet(dst / f.name, index=False)
        else:
            shutil.copy(f, dst / f.name)
    return dst
