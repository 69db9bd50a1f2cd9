"""CLI: ``botfilter recompute``, ``run``, ``report``, ``settings set``, ``metrics show``."""

from __future__ import annotations

from pathlib import Path

import typer

settings_app = typer.Typer(help="Tenant settings (exclude bot interactions per channel).")
metrics_app = typer.Typer(help="Look at the recomputed metrics.")


def recompute(
    data: Path = typer.Option(..., help="Data directory (messages, events, segments, settings)."),
    as_of: str | None = typer.Option(None, help="End of the 30-day window (ISO-8601); now."),
    tenant: str | None = typer.Option(None, help="Only this tenant; default all."),
    scores: Path | None = typer.Option(None, help="Use this scores file instead of scoring."),
    out: Path | None = typer.Option(None, help="Also write the four metric tables here."),
) -> None:
    """Recompute the metrics of the last 30 days per the tenants' settings."""
    raise NotImplementedError


def run(
    data: Path = typer.Option(..., help="Data directory to watch for new event files."),
    every: str | None = typer.Option(None, help="Loop with this period (e.g. 5m); once if unset."),
) -> None:
    """Worker loop: pick up new data and queued setting changes, recompute."""
    raise NotImplementedError


def report(
    tenant: str = typer.Option(..., help="Tenant to report on."),
    out: Path = typer.Option(Path("report.html"), help="HTML file to write."),
) -> None:
    """Write a self-contained HTML page of charts: human against bot."""
    raise NotImplementedError


@settings_app.command("set")
def settings_set(
    tenant: str = typer.Option(..., help="Tenant to change."),
    email: str | None = typer.Option(None, help="Exclude bots from Email: on or off."),
    sms: str | None = typer.Option(None, help="Exclude bots from SMS: on or off."),
) -> None:
    """Change a tenant's setting and queue the 30-day recomputation."""
    raise NotImplementedError


@metrics_app.command("show")
def metrics_show(
    tenant: str = typer.Option(..., help="Tenant to show."),
    module: str = typer.Option("campaigns", help="campaigns, automations, segments or dashboard."),
) -> None:
    """Print metrics with and without bots side by side."""
    raise NotImplementedError
