"""``botfilter demo``: the main job end to end on embedded defaults."""

from __future__ import annotations

import typer


def demo(
    tenants: int = typer.Option(3, min=1, help="Tenants in the simulated world."),
    days: int = typer.Option(30, min=1, help="Days of sends."),
    seed: int = typer.Option(7, help="Random seed of the simulated world."),
) -> None:
    """Simulate, validate, train, score, switch exclusion on, recompute, and show metrics."""
    raise NotImplementedError
