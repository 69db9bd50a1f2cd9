"""The ``botfilter`` command line: thin, each command lives in its stage's ``commands`` module."""

from __future__ import annotations

import logging
import os
import sys

import typer

from contract.commands import validate
from features.commands import vendor
from jobs.commands import metrics_app, recompute, report, run, settings_app
from labelling.commands import label
from monitoring.commands import monitor
from serving.commands import serve
from simulation.commands import simulate
from training.commands import evaluate, score, train

from .demo import demo
from .errors import BotfilterError

app = typer.Typer(
    name="botfilter",
    help="Bot-interaction filter for email and SMS engagement analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (
    demo,
    simulate,
    validate,
    label,
    train,
    evaluate,
    monitor,
    score,
    recompute,
    run,
    report,
    serve,
):
    app.command()(command)
app.command(name="vendor")(vendor)
app.add_typer(settings_app, name="settings")
app.add_typer(metrics_app, name="metrics")


def main() -> None:
    """Entry point: run the app and turn user errors into one line on stderr."""
    # MLflow logs store migrations at INFO on stderr; keep stderr for what the user must read.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        app()
    except BotfilterError as exc:
        print(f"botfilter: error: {exc}", file=sys.stderr)
        sys.exit(2)
