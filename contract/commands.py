"""CLI: ``botfilter validate``."""

from __future__ import annotations

from pathlib import Path

import typer


def validate(
    data: Path = typer.Option(..., help="Data directory with messages/events[/segments/settings]."),
    out: Path = typer.Option(..., help="Where to write the clean tables and quarantine.parquet."),
) -> None:
    """Check every row against the data contract; write clean tables and the quarantine."""
    raise NotImplementedError  # owned by the contract stage
