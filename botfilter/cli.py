"""The ``botfilter`` command line: thin, each command lives in its stage's ``commands`` module."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import traceback
from typing import NoReturn

import typer

from console.commands import console
from contract.commands import validate
from core.errors import BotfilterError, is_user_error, one_line_error
from core.redact import redact
from core.signals import stop_on_signals
from features.commands import vendor
from jobs.commands import metrics_app, recompute, report, run, score, scores_app, settings_app
from labelling.commands import label
from monitoring.commands import monitor
from serving.commands import serve, tokens_app
from simulation.commands import simulate
from training.commands import evaluate, promote, train

from .demo import demo

app = typer.Typer(
    name="botfilter",
    help="Bot-interaction filter for email and SMS engagement analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help and usage errors: typer's rich formatter imports rich.markdown, pygments
    # and rich.traceback (1.3 s of the 3 s `botfilter --help` took on this machine).
    rich_markup_mode=None,
)
for command in (
    demo,
    simulate,
    validate,
    label,
    train,
    promote,
    evaluate,
    monitor,
    score,
    recompute,
    run,
    report,
    serve,
    console,
):
    app.command()(command)
app.command(name="vendor")(vendor)
app.add_typer(settings_app, name="settings")
app.add_typer(metrics_app, name="metrics")
app.add_typer(tokens_app, name="tokens")
app.add_typer(scores_app, name="scores")


def main() -> None:
    """Entry point: run the app; any failure is one line on stderr (see :func:`fail`)."""
    # MLflow logs store migrations at INFO on stderr; keep stderr for what the user must read.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        # SIGTERM (a scheduler or service manager stopping the command) unwinds like Ctrl-C, so
        # runs are closed and temporary files removed (core.signals). Typer turns the
        # interruption into status 130; the signal's own status and a line replace it here.
        with stop_on_signals(signal.SIGTERM) as stops:
            # Not standalone: click would print a usage error in four lines (usage, a hint, a
            # blank line, the error); here it is one, like every other error.
            status = app(standalone_mode=False)
        if stops:
            print(f"botfilter: {stops[0]}", file=sys.stderr)
            sys.exit(stops[0].exit_code)
    except typer.TyperException as exc:  # typer's (vendored click's) usage and file errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # `botfilter` alone: the help, as asked
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)
        said = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        if exc.exit_code == 2 and ctx is not None:  # a usage error: where to read the usage
            said = said if said.endswith((".", "!", "?")) else f"{said}."
            said += f" See '{ctx.command_path} --help'."
        print(f"botfilter: error: {said}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C at a prompt or while a command ran
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # the one place every failure of every command ends up
        fail(exc)
    else:
        # a command's typer.Exit(code) (or --help's), returned outside standalone mode
        sys.exit(status if isinstance(status, int) else 0)
    finally:
        # The process exits now (app() and fail() end in SystemExit): the collections at
        # interpreter shutdown would traverse every object the command made, which is only
        # memory the system takes back anyway (0.15-0.37 s after `botfilter score` on 2.65M
        # events). Objects are still finalized as their references go; atexit handlers run.
        gc.freeze()


def fail(exc: Exception) -> NoReturn:
    """Print ``exc`` as one line without secrets and exit: 2 for a user error (the machine
    refusing a file included), 1 for an internal failure. With ``BOTFILTER_DEBUG=1`` the
    traceback comes first."""
    if _debug():  # masked too: a traceback quotes the URLs its frames were given
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
    print(f"botfilter: error: {one_line_error(exc)}", file=sys.stderr)
    sys.exit(2 if is_user_error(exc) else 1)


def _debug() -> bool:
    # Imported on use: pydantic-settings would add 0.11 s to `botfilter --help` (-X importtime).
    from core.settings import get_settings

    try:
        return get_settings().debug
    except BotfilterError:  # the settings themselves are what failed: no traceback needed
        return False
