"""CLI: ``botfilter simulate``."""

from __future__ import annotations

from pathlib import Path

import typer


def simulate(
    out: Path = typer.Option(..., help="Directory to write messages/events/segments/settings to."),
    tenants: int = typer.Option(3, min=1, help="Number of tenants (customer accounts)."),
    days: int = typer.Option(30, min=1, help="Days of sends to simulate."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives identical files."),
) -> None:
    """Write a labelled synthetic data directory (email and SMS, bots and people)."""
    raise NotImplementedError  # owned by the simulation stage
