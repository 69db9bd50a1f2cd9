"""CLI: ``botfilter train``, ``evaluate`` and ``score``."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    data: Path = typer.Option(..., help="Labelled data directory (events carry label/bot_kind)."),
) -> None:
    """Train LightGBM, log to MLflow, register, and promote through the gate."""
    raise NotImplementedError


def evaluate(
    data: Path = typer.Option(..., help="Labelled data directory to evaluate on."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
) -> None:
    """Quality report against labels, with a UA-list baseline side by side."""
    raise NotImplementedError


def score(
    data: Path = typer.Option(..., help="Data directory to score."),
    out: Path = typer.Option(..., help="Scores file (.parquet or .csv)."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
) -> None:
    """Write the scores table: bot_score, is_bot, reasons, model_version per event."""
    raise NotImplementedError
