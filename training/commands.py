"""CLI: ``botfilter train``, ``promote`` and ``evaluate``.

Each command imports the rest inside its body: at the top, every ``botfilter --help`` would load
pandas, LightGBM and MLflow (seconds; tests/unit/test_cli_startup.py keeps them out), the
settings' pydantic (0.6 s) and rich.console (0.09 s), measured on this machine.
"""

from __future__ import annotations

from pathlib import Path

import typer

from core.errors import BotfilterError
from core.paths import check_out_files


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
    mix: list[Path] | None = typer.Option(
        None,
        metavar="DIR",
        help="A labelled (simulated) data directory whose events join the training data; "
        "repeat it to mix in several worlds.",
    ),
) -> None:
    """Train LightGBM, log to MLflow, register, and promote through the gate."""
    from rich.console import Console
    from rich.text import Text

    from core.settings import get_settings
    from training.evaluate import print_report
    from training.train import train as run_train

    console = Console()  # markup on: training's printers style their words with it
    settings = get_settings(target_precision=target_precision)
    with console.status("training"):
        result = run_train(settings, data, console, labels=labels, mix=mix or [])
    print_report(result.report, console)
    verdict = (
        (f"promoted to @{settings.champion_alias}", "green")
        if result.decision.promote
        else ("not promoted", "red")
    )
    console.print(  # Text: the version and the reasons shown as written
        Text.assemble(
            f"registered {result.version} (run {result.run_id}): ",
            verdict,
            " — " + "; ".join(result.decision.reasons),
        )
    )


def promote(
    version: int = typer.Option(..., help="Registered version number to judge (botfilter/N)."),
    accept_weak_labels: bool = typer.Option(
        False,
        "--accept-weak-labels",
        help="Accept a version judged only on the weak labels it was trained on (its data had "
        "no labels of their own), which the gate never lets replace a champion: it then has "
        "to clear the gate's floors, and the run records that a person accepted it.",
    ),
) -> None:
    """Run the gate on a registered version against the current champion; move the champion
    alias to it only if it passes (exit 1 when it does not)."""
    from rich.console import Console

    from core.settings import get_settings
    from training.promote import print_promotion
    from training.promote import promote as run_promote

    console = Console()
    promotion = run_promote(get_settings(), version, console, accept_weak_labels=accept_weak_labels)
    print_promotion(promotion, console)
    if not promotion.decision.promote:
        raise typer.Exit(1)


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
    seeds: int = typer.Option(
        1,
        min=1,
        help="With --suite: seeds per world; with more than one, each world is judged on its "
        "seeds pooled.",
    ),
    validation: bool = typer.Option(
        False,
        "--validation",
        help="With --suite: the validation worlds instead (the same profiles, seeds the suite "
        "never uses), for choosing knobs without looking at the suite.",
    ),
    cuts: str | None = typer.Option(
        None,
        "--cuts",
        help="With --suite: judge at each of these email-click cuts too (comma-separated, from "
        "0.5 up to 1) instead of printing every world: the worst family of people flagged against "
        "the worst CTR error per cut, as a table, JSON and a plot (choose on --validation).",
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
    from rich.console import Console

    from core.output import plain_console, write_text_whole
    from core.settings import get_settings

    if unlabelled:
        from labelling.estimates import evaluate_unlabelled

        if data is None or suite or worlds is not None:
            raise BotfilterError("--unlabelled needs --data DIR (and no --suite or --worlds)")
        check_out_files({"--out": out}, data)  # (it was never written: an audit)
        evaluate_unlabelled(get_settings(), data, model, plain_console(), out)
        return
    import numpy as np

    from contract import load
    from scoring.registry import load_model
    from training.evaluate import evaluate_model, print_report
    from training.fit import prepare
    from training.kind import evaluate_kind, print_kind_report
    from training.report import json_text

    if (data is None) == (not suite):
        raise BotfilterError("give either --data DIR or --suite")
    if not suite and (seeds != 1 or validation or cuts is not None):
        raise BotfilterError("--seeds, --validation and --cuts go with --suite")
    # Inside the input (--data, or the suite's --worlds) the report replaced a table of it.
    if suite:
        check_out_files({"--out": out}, worlds, "--worlds")
    else:
        check_out_files({"--out": out}, data)
    frontier_cuts = None
    if cuts is not None:  # a bad cut fails before the model loads
        from training.suite import parse_cuts

        frontier_cuts = parse_cuts(cuts)
    console = Console()  # markup on: training's printers style their words with it
    shown = plain_console()  # this command's own lines and the contract's report: data as written
    settings = get_settings()
    bot_model = load_model(settings, model)
    if suite:
        from training.suite import (
            report_frontier,
            report_suite,
            run_suite,
            suite_frontier,
        )

        root = worlds or settings.ensure_home() / "suite"
        which = "validation" if validation else "suite"
        name = f"{which}-{bot_model.version.replace('/', '-')}"
        if frontier_cuts is not None:
            points = suite_frontier(
                bot_model, root, frontier_cuts, console=console, seeds=seeds, validation=validation
            )
            out = out or settings.ensure_home() / "reports" / f"{name}-frontier.json"
            title = f"{bot_model.version}: {which} worlds"
            if report_frontier(points, console, out, f"{title}, {seeds} seed(s) each"):
                raise typer.Exit(1)
            return
        results = run_suite(bot_model, root, console=console, seeds=seeds, validation=validation)
        out = out or settings.ensure_home() / "reports" / f"{name}.json"
        missed = report_suite(results, console, out)
        shown.print(f"model {bot_model.version}; suite saved to {out}")
        if missed:
            raise typer.Exit(1)
        return
    assert data is not None  # checked above: --data or --suite
    validated = load(data)
    validated.report.print(shown)  # the events left out of the evaluation, and why
    # An event without a label cannot be judged: left out and said (PRODUCT.md "Bad input"),
    # as the quarantine is, instead of failing the whole evaluation.
    prep = prepare(validated, unlabelled="leave out")
    if prep.left_out is not None:
        shown.print(prep.left_out.sentence("evaluation"))
    rows = np.arange(len(prep.ctx))
    report = evaluate_model(bot_model, prep, rows).report.with_version(bot_model.version)
    print_report(report, console)
    kinds = evaluate_kind(bot_model, prep, rows)
    print_kind_report(kinds, console)
    out = (
        out
        or settings.ensure_home()
        / "reports"
        / f"evaluation-{bot_model.version.replace('/', '-')}.json"
    )
    saved = {**report.to_dict(), "bot_kind_confusion": kinds}
    if prep.left_out is not None:
        saved["left_out"] = prep.left_out.as_dict()
    write_text_whole(out, json_text(saved))  # strict JSON: NaN as null
    shown.print(f"model {bot_model.version}; report saved to {out}")
