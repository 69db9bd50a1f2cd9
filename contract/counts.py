"""Validation counts per table, with the invariant read == kept + quarantined + duplicates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class CountMismatch(RuntimeError):
    """Rows were lost or double counted: a bug in validation, never a data problem."""


@dataclass
class TableReport:
    """What happened to the rows of one table."""

    table: str
    source: str
    read: int
    kept: int
    duplicates: int
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> rows
    # events: the message_id of each row quarantined as "unknown message". Validated apart, a
    # part of the tenants cannot tell it from "tenant mismatch with message" (only another
    # tenant keeps that message): contract.parts.TenantParts.settle decides it afterwards.
    unknown_messages: list[str] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.check()

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    def check(self) -> None:
        """Raise :class:`CountMismatch` unless every row read is kept, quarantined or a
        duplicate, exactly once."""
        accounted = self.kept + self.quarantined_total + self.duplicates
        if self.read != accounted:
            raise CountMismatch(
                f"{self.table}: read {self.read} rows but accounted for {accounted} "
                f"(kept {self.kept}, quarantined {self.quarantined_total}, "
                f"duplicates {self.duplicates})"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "source": self.source,
            "read": self.read,
            "kept": self.kept,
            "quarantined": self.quarantined_total,
            "duplicates": self.duplicates,
            "reasons": dict(self.quarantined),
        }


@dataclass
class Report:
    """Counts for every table of one validation run."""

    tables: dict[str, TableReport]

    @property
    def quarantined_total(self) -> int:
        return sum(t.quarantined_total for t in self.tables.values())

    def check(self) -> None:
        for table in self.tables.values():
            table.check()

    def as_dict(self) -> dict[str, Any]:
        return {name: t.as_dict() for name, t in self.tables.items()}

    def print(self, console: Console | None = None) -> None:
        """The summary: rows per table, then quarantined rows per reason."""
        # Imported on print only: rich (0.06 s) stays out of the `botfilter score` worker
        # processes, which validate through this module and never print.
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text  # paths and reasons are data: never read as markup

        console = console or Console()
        counts = Table(title="Validation", title_justify="left")
        counts.add_column("table")
        counts.add_column("source", overflow="fold")
        for name in ("read", "kept", "quarantined", "duplicates"):
            counts.add_column(name, justify="right")
        for t in self.tables.values():
            counts.add_row(
                t.table,
                Text(t.source),
                f"{t.read:,}",
                f"{t.kept:,}",
                f"{t.quarantined_total:,}",
                f"{t.duplicates:,}",
            )
        console.print(counts)
        if not self.quarantined_total:
            console.print("No rows quarantined.")
            return
        reasons = Table(title="Quarantined rows by reason", title_justify="left")
        reasons.add_column("table")
        reasons.add_column("reason", overflow="fold")
        reasons.add_column("rows", justify="right")
        for t in self.tables.values():
            for reason, rows in sorted(t.quarantined.items(), key=lambda kv: (-kv[1], kv[0])):
                reasons.add_row(t.table, Text(reason), f"{rows:,}")
        console.print(reasons)
