"""CLI: ``botfilter label``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from contract import load
from core.errors import BotfilterError
from core.paths import check_out_files


def label(
    data: Path = typer.Option(..., help="Data directory (messages, events); labels not needed."),
    out: Path = typer.Option(..., help="Weak-label file (.parquet or .csv), one row per event."),
    report: Path | None = typer.Option(
        None, help="Where to save the labelling-function report (JSON); default OUT.report.json."
    ),
) -> None:
    """Weak labels from honeypots and rules: each function's votes and the label model's P(bot)."""
    # Imported on use: rich, pydantic-settings and labelling.label add 0.5 s to `--help`.
    from core.output import plain_console, write_text_whole, write_whole
    from core.settings import get_settings
    from labelling.label import hidden_truth, label_directory, print_report, write_labels

    get_settings()
    if out.suffix not in (".parquet", ".csv"):
        raise BotfilterError(f"{out}: the labels file must end in .parquet or .csv")
    # Before any work: a --report that is a directory (or under a missing folder that cannot
    # be made) failed after the labels were written, as an internal error; either file inside
    # --data replaced a table of it, and one file given as both kept only the report.
    report = report or out.with_name(out.stem + ".report.json")
    check_out_files({"--out": out, "--report": report}, data)
    console = plain_console()
    validated = load(data)
    validated.report.print(console)
    with console.status(f"labelling {len(validated.events):,} events"):
        weak = label_directory(validated)
    # A simulated world carries its own labels: the report then shows each function's true
    # accuracy beside the estimate. The labels never reach the label model.
    numbers = weak.report(hidden_truth(weak.ctx))
    table = weak.table()
    write_whole(out, lambda tmp: write_labels(table, tmp))  # whole or not at all, as the report
    write_text_whole(report, json.dumps(numbers, indent=2))
    print_report(numbers, console)
    console.print(f"weak labels -> {out}; report -> {report}")
