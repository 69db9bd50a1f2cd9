"""Figures logged with every training run."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _plt() -> ModuleType:
    """pyplot on the file-only backend. Imported here, not at the top: pyplot costs 1.5 s and
    `botfilter promote` imports this module (through training.tracking) without drawing; and
    the backend must be chosen before pyplot is imported, which is no side effect for import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> Path:
    """Lay out, write (110 dpi, as every plot here) and close ``fig``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def pr_curve(y: np.ndarray, proba: np.ndarray, groups: pd.Series, path: Path) -> Path:
    """Precision-recall curves, overall and per channel x type."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, idx in [("all", np.arange(len(y)))] + sorted(groups.groupby(groups).indices.items()):
        yy = y[idx]
        if yy.any() and (~yy).any():
            p, r, _ = precision_recall_curve(yy, proba[idx])
            ax.plot(r, p, label=str(name), lw=2 if name == "all" else 1)
    ax.set(
        xlabel="recall", ylabel="precision", title="Precision-recall (test split)", ylim=(0.5, 1.01)
    )
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def calibration(y: np.ndarray, proba: np.ndarray, path: Path) -> Path:
    """Reliability diagram: mean predicted probability against observed bot share."""
    plt = _plt()
    frac, mean = calibration_curve(y, proba, n_bins=15, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.plot(mean, frac, "o-", label="model")
    ax.set(
        xlabel="predicted bot probability",
        ylabel="observed bot share",
        title="Calibration (test split)",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def importance(names: list[str], gains: np.ndarray, path: Path, top: int = 25) -> Path:
    """Top features by total gain."""
    plt = _plt()
    order = np.argsort(gains)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(order) + 1))
    ax.barh([names[i] for i in order], gains[order] / max(gains.sum(), 1e-12))
    ax.set(xlabel="share of total gain", title="Feature importance")
    return _save(fig, path)


def confusion_by_kind(kind: pd.Series, is_bot: np.ndarray, path: Path) -> Path:
    """Share flagged as bot per true kind (people, each bot kind, each hard negative)."""
    plt = _plt()
    tab = pd.crosstab(
        kind.to_numpy(), np.where(is_bot, "flagged bot", "kept as human"), normalize="index"
    )
    counts = kind.value_counts()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(tab) + 1.2))
    flagged = tab.get("flagged bot", pd.Series(0.0, index=tab.index))
    ax.barh(
        [f"{k} (n={counts[k]:,})" for k in tab.index], flagged, color="#c0392b", label="flagged bot"
    )
    ax.barh(
        [f"{k} (n={counts[k]:,})" for k in tab.index],
        1 - flagged,
        left=flagged,
        color="#27ae60",
        label="kept as human",
    )
    ax.set(xlim=(0, 1), xlabel="share of events", title="Verdict by true kind (test split)")
    ax.legend(loc="lower right")
    return _save(fig, path)


def frontier(
    cuts: list[float],
    worst_fpr: list[float],
    worst_ctr_pp: list[float],
    fitted: float,
    max_fpr: float,
    max_ctr_pp: float,
    title: str,
    path: Path,
) -> Path:
    """The worst family's FPR against the worst CTR error, a point per cut, with the targets'
    corner shaded: the points inside it meet both."""
    plt = _plt()
    order = np.argsort(cuts)
    x = np.asarray(worst_ctr_pp, dtype=float)[order]
    y = 100 * np.asarray(worst_fpr, dtype=float)[order]
    c = np.asarray(cuts, dtype=float)[order]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.fill_between([0, max_ctr_pp], 0, 100 * max_fpr, color="#27ae60", alpha=0.15, label="targets")
    ax.axvline(max_ctr_pp, color="#27ae60", ls="--", lw=1)
    ax.axhline(100 * max_fpr, color="#27ae60", ls="--", lw=1)
    ax.plot(x, y, "o-", color="#2c3e50", lw=1.2)
    for i, (xi, yi, ci) in enumerate(zip(x, y, c, strict=True)):
        # alternately above and below the line: neighbouring cuts often sit close together
        offset = (5, 5) if i % 2 == 0 else (5, -12)
        ax.annotate(f"{ci:.2f}", (xi, yi), textcoords="offset points", xytext=offset, fontsize=8)
    own = np.flatnonzero(c == fitted)
    if own.size:
        ax.plot(x[own], y[own], "*", ms=14, color="#c0392b", label=f"fitted cut {fitted:.3f}")
    ax.set(
        xlabel="worst world's campaign CTR error (pp)",
        ylabel="worst family of people flagged (%)",
        title=title,
        xlim=(0, max(float(x.max(initial=0)), max_ctr_pp) * 1.15),
        ylim=(0, max(float(y.max(initial=0)), 100 * max_fpr) * 1.15),
    )
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return _save(fig, path)
