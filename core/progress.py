"""Progress bars of the commands that count events (rich, imported on use: 0.1 s)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def events_bar(label: str, console: Console, total: bool = False) -> Progress:
    """A bar for long work over events: ``label``, the bar, the events done (``of`` the task's
    total with ``total``), the time. Transient, and off when ``console`` is not a terminal: a
    failure must stay the only line on stderr."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    counts = "{task.completed:,} of {task.total:,} events" if total else "{task.completed:,} events"
    return Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn(counts),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
