"""CLI: ``botfilter train``, ``evaluate`` and ``score``."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    data: Path = typer.Option(..., help="Labelled data directory (events carry label/bot_kind)."),
    target_precision: float | None = typer.Option(
        None, help="Precision the per-(channel, type) thresholds aim for (default 0.99)."
    ),
    labels: str | None = typer.Option(
        None,
        help="'weak' to label the data with the labelling functions (botfilter label), or a "
        "weak-label file; default: the events' own label column.",
    ),
    mix: Path | None = typer.Option(
        None, help="A labelled (simulated) data directory whose events join the training data."
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
        result = run_train(settings, data, console, labels=labels, mix=mix)
    print_report(result.report, console)
    verdict = (
        "[green]promoted to @champion[/]" if result.decision.promote else "[red]not promoted[/]"
    )
    console.print(
        f"registered {result.version} (run {result.run_id}): {verdict} — {'; '.join(result.decision.reasons)}"
    )


def evaluate(
    data: Path | None = typer.Option(None, help="Labelled data directory to evaluate on."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
    out: Path | None = typer.Option(
        None, help="Where to save the report (JSON); default under the data home."
    ),
    suite: bool = typer.Option(
        False,
        "--suite",
        help="Run the stress suite instead: worlds of other seeds and profiles, each pushing a "
        "hard-negative family (or an unseen scanner family) beyond training, with its targets.",
    ),
    worlds: Path | None = typer.Option(
        None, help="With --suite: where the suite's worlds are simulated and reused."
    ),
    unlabelled: bool = typer.Option(
        False,
        "--unlabelled",
        help="No labels needed: estimate scanner recall per tenant and channel from "
        "honeypot-confirmed events, and save it for the report and metrics show.",
    ),
) -> None:
    """Quality report against labels, with a UA-list baseline side by side (or the stress
    suite, or without labels the scanner recall estimated from honeypots)."""
    import json

    from rich.console import Console

    from botfilter.errors import BotfilterError
    from botfilter.paths import check_out_file
    from botfilter.settings import get_settings

    if unlabelled:
        from labelling.estimates import evaluate_unlabelled

        if data is None or suite:
            raise BotfilterError("--unlabelled needs --data DIR (and no --suite)")
        evaluate_unlabelled(get_settings(), data, model, Console())
        return
    from contract import load
    from scoring.registry import load_model
    from training.evaluate import print_report
    from training.train import evaluate_model, prepare

    if (data is None) == (not suite):
        raise BotfilterError("give either --data DIR or --suite")
    if out is not None:
        check_out_file(out)
    console = Console()
    settings = get_settings()
    bot_model = load_model(settings, model)
    if suite:
        from training.suite import print_suite, run_suite

        root = worlds or settings.ensure_home() / "suite"
        results = run_suite(bot_model, root, console=console)
        print_suite(results, console)
        out = out or settings.ensure_home() / "reports" / (
            f"suite-{bot_model.version.replace('/', '-')}.json"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=float))
        console.print(f"model {bot_model.version}; suite saved to {out}")
        if any(r["failures"] for r in results):
            raise typer.Exit(1)
        return
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
    data: Path = typer.Option(
        ..., help="Data directory to score (or a Hadoop path with --engine spark)."
    ),
    out: Path = typer.Option(..., help="Scores file (.parquet or .csv)."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
    engine: str = typer.Option("local", help="local (this machine) or spark (Apache Spark)."),
    spark_master: str | None = typer.Option(
        None, help="Spark master URL for --engine spark (default BOTFILTER_SPARK_MASTER, local[2])."
    ),
) -> None:
    """Write the scores table: bot_score, is_bot, reasons, model_version per event."""
    from rich.console import Console

    from botfilter.errors import BotfilterError
    from botfilter.paths import check_out_file
    from botfilter.settings import get_settings

    if engine not in ("local", "spark"):
        raise BotfilterError(f"--engine {engine}: choose local or spark")
    if engine == "local":  # (Spark writes Hadoop paths too, which it checks itself)
        check_out_file(out)
    console = Console()
    settings = get_settings()
    if engine == "spark":
        from jobs.spark_engine import run_score

        run = run_score(settings, str(data), str(out), model, spark_master)
        run.report.print(console)
        console.print(
            f"scored {run.events:,} events ({run.bots:,} bots) with {run.model_version} on Spark -> {run.out}"
        )
        return

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from scoring.batch import score_data_dir

    if out.suffix not in (".parquet", ".csv"):
        raise BotfilterError(f"{out}: the scores file must end in .parquet or .csv")
    # Part by part (whole tenants): memory follows the largest tenant, not the file.
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,} events"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("scoring", total=None)
        run = score_data_dir(
            data, out, settings, model, on_part=lambda n: progress.advance(task, n)
        )
    run.report.print(console)
    console.print(
        f"scored {run.events:,} events ({run.bots:,} bots) with {run.model_version} -> {out}"
    )
