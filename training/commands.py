"""CLI: ``botfilter train``, ``evaluate`` and ``score``."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    data: Path = typer.Option(..., help="Labelled data directory (events carry label/bot_kind)."),
    target_precision: float | None = typer.Option(
        None, help="Precision the per-(channel, type) thresholds aim for (default 0.99)."
    ),
) -> None:
    """Train LightGBM, log to MLflow, register, and promote through the gate."""
    from rich.console import Console

    from botfilter.settings import get_settings
    from training.evaluate import print_report
    from training.train import train as run_train

    console = Console()
    settings = get_settings(target_precision=target_precision)
    with console.status("training"):
        result = run_train(settings, data, console)
    print_report(result.report, console)
    verdict = (
        "[green]promoted to @champion[/]" if result.decision.promote else "[red]not promoted[/]"
    )
    console.print(
        f"registered {result.version} (run {result.run_id}): {verdict} — {'; '.join(result.decision.reasons)}"
    )


def evaluate(
    data: Path = typer.Option(..., help="Labelled data directory to evaluate on."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
    out: Path | None = typer.Option(
        None, help="Where to save the report (JSON); default under the data home."
    ),
) -> None:
    """Quality report against labels, with a UA-list baseline side by side."""
    import json

    from rich.console import Console

    from botfilter.settings import get_settings
    from contract import load
    from scoring.registry import load_model
    from training.evaluate import print_report
    from training.train import evaluate_model, prepare

    console = Console()
    settings = get_settings()
    bot_model = load_model(settings, model)
    prep = prepare(load(data))
    import numpy as np

    report, _, _ = evaluate_model(bot_model, prep, np.arange(len(prep.ctx)))
    report["model_version"] = bot_model.version
    print_report(report, console)
    out = (
        out
        or settings.ensure_home()
        / "reports"
        / f"evaluation-{bot_model.version.replace('/', '-')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    console.print(f"model {bot_model.version}; report saved to {out}")


def score(
    data: Path = typer.Option(..., help="Data directory to score."),
    out: Path = typer.Option(..., help="Scores file (.parquet or .csv)."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
) -> None:
    """Write the scores table: bot_score, is_bot, reasons, model_version per event."""
    from rich.console import Console

    from botfilter.errors import BotfilterError
    from botfilter.settings import get_settings
    from contract import load
    from scoring.batch import score_validated
    from scoring.io import write_scores

    if out.suffix not in (".parquet", ".csv"):
        raise BotfilterError(f"{out}: the scores file must end in .parquet or .csv")
    console = Console()
    settings = get_settings()
    validated = load(data)
    scores = score_validated(validated, settings, model)
    write_scores(scores, out)
    console.print(
        f"scored {len(scores):,} events ({int(scores['is_bot'].sum()):,} bots) with {scores['model_version'].iat[0] if len(scores) else '-'} -> {out}"
    )
