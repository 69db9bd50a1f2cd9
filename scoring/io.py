"""Reading and writing the scores table (Parquet keeps ``reasons`` as a list; CSV joins with ';')."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from botfilter.errors import BotfilterError
from contract.schema import SCORE_COLUMNS


def write_scores(scores: pd.DataFrame, path: Path) -> None:
    """Write a scores table as Parquet or CSV by extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        scores.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        flat = scores.assign(reasons=scores["reasons"].map(";".join))
        flat.to_csv(path, index=False)
    else:
        raise BotfilterError(f"{path}: scores must be .parquet or .csv")


def read_scores(path: Path) -> pd.DataFrame:
    """Read a scores table written by :func:`write_scores` (or by another system, same columns)."""
    if not path.exists():
        raise BotfilterError(f"{path}: scores file not found")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(
            path,
            dtype={"event_id": str, "model_version": str, "reasons": str},
            keep_default_na=False,
        )
        df["reasons"] = df["reasons"].map(lambda s: [r for r in s.split(";") if r])
    else:
        raise BotfilterError(f"{path}: scores must be .parquet or .csv")
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise BotfilterError(f"{path}: missing column {missing[0]}")
    df["is_bot"] = (
        df["is_bot"].astype(str).str.lower().isin(["true", "1"])
        if df["is_bot"].dtype == object
        else df["is_bot"].astype(bool)
    )
    return df[list(SCORE_COLUMNS)]
