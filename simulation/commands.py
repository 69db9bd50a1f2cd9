"""CLI: ``botfilter simulate``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from core.errors import BotfilterError

# Contacts in one world (tenants x median contacts per tenant), which memory follows: the
# benchmarks' 2.65M-event world is 110 x 4,000; 100,000 x 4,000 ran this 24 GiB machine out of
# memory (an audit). About 12M events at most.
MAX_CONTACTS = 2_000_000


def simulate(
    out: Path = typer.Option(..., help="Directory to write messages/events/segments/settings to."),
    tenants: int = typer.Option(3, min=1, help="Number of tenants (customer accounts)."),
    days: int = typer.Option(30, min=1, help="Days of sends to simulate."),
    seed: int = typer.Option(0, min=0, help="Random seed; the same seed gives identical files."),
    profile: str = typer.Option(
        "default",
        help="Behaviour profile: 'default', 'shifted' or 'new_scanner' (simulation/README.md).",
    ),
    end: str = typer.Option(
        "2026-11-01T00:00:00Z",
        help="Exclusive end of the window (ISO-8601); sends fall in [end - days, end).",
    ),
    contacts: int | None = typer.Option(
        None, min=10, help="Median contacts per tenant (default from the profile: 4000)."
    ),
) -> None:
    """Write a labelled synthetic data directory (email and SMS, bots and people)."""
    # Imported on use: rich and simulation.core (pandas, numba) add 1 s to `botfilter --help`.
    from rich.table import Table

    from core.output import plain_console
    from core.settings import get_settings

    from .config import SimConfig
    from .core import simulate as run

    get_settings()  # validates BOTFILTER_* early, like every command
    try:
        end_at = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BotfilterError(f"--end {end!r} is not an ISO-8601 timestamp") from exc
    if end_at.tzinfo is None:
        end_at = end_at.replace(tzinfo=UTC)
    overrides: dict[str, object] = {"end": end_at}
    if contacts is not None:
        overrides["contacts_per_tenant"] = contacts
    config = SimConfig.variant(profile, **overrides)
    people = tenants * config.contacts_per_tenant
    if people > MAX_CONTACTS:  # memory follows the contacts: 100,000 tenants ran out of it
        raise BotfilterError(
            f"--tenants {tenants} x {config.contacts_per_tenant:,} contacts is {people:,} contacts; "
            f"at most {MAX_CONTACTS:,} in one world (fewer tenants or --contacts)"
        )
    summary = run(out, tenants=tenants, days=days, seed=seed, config=config, progress=True)

    table = Table(title=f"simulated world -> {summary.out} (profile {summary.profile})")
    table.add_column("what")
    table.add_column("value", justify="right")
    for channel, count in summary.messages.items():
        table.add_row(
            f"{channel} messages (delivered)", f"{count} ({summary.delivered.get(channel, 0)})"
        )
    table.add_row("events", str(summary.events))
    for key, share in summary.bot_share_by_type.items():
        table.add_row(f"bot share, {key}", f"{share:.1%}")
    for channel, share in summary.bot_share.items():
        table.add_row(f"bot share, all {channel} events", f"{share:.1%}")
    for kind, count in summary.bot_kinds.items():
        table.add_row(f"bot kind {kind}", str(count))
    table.add_row("seconds", f"{summary.seconds:.1f}")
    plain_console().print(table)  # the title's path shown as written
