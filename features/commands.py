"""CLI: ``botfilter vendor``."""

from __future__ import annotations

from pathlib import Path

import typer


def vendor(
    source: Path = typer.Option(
        Path("../shared/data"), help="Folder with ipranges/, datacenter/, asn/, user-agents/."
    ),
    out: Path | None = typer.Option(
        None, help="Output folder (default: the packaged features/enrichment/data)."
    ),
    curated: Path | None = typer.Option(
        None,
        help="Folder with the curated vendor lists (default: features/enrichment/sources).",
    ),
) -> None:
    """Rebuild the compact vendored enrichment data from newer public source files."""
    # Imported on use: the vendor builder (pandas) adds 0.46 s to `botfilter --help`.
    from core.paths import check_out_dir
    from features.enrichment.vendor import CURATED_DIR, DATA_DIR, build_vendored_data, iter_lines

    if out is not None:
        check_out_dir(out)  # before the build (a file there failed after it, as an internal error)
    summary = build_vendored_data(source, out or DATA_DIR, curated=curated or CURATED_DIR)
    typer.echo(f"vendored enrichment data written to {summary.out_dir}")
    for line in iter_lines(summary):
        typer.echo(line)
