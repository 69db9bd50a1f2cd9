"""CLI: ``botfilter vendor``."""

from __future__ import annotations

from pathlib import Path

import typer


def vendor(
    source: Path = typer.Option(
        Path("../shared/data"), help="Folder with ipranges/, datacenter/, asn/, user-agents/."
    ),
) -> None:
    """Rebuild the compact vendored enrichment data from newer public source files."""
    raise NotImplementedError  # owned by the enrichment stage
