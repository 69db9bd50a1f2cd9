"""CLI: ``botfilter validate``."""

from __future__ import annotations

from pathlib import Path

import typer

from core.paths import check_apart, check_out_dir


def validate(
    data: Path = typer.Option(
        ..., help="Data directory: messages and events, optionally segments and settings."
    ),
    out: Path = typer.Option(..., help="Where to write the clean tables and quarantine.parquet."),
) -> None:
    """Check every row against the data contract; write clean tables and the quarantine."""
    # Imported on use: rich and the readers/validator add 0.9 s to `botfilter --help`.
    from contract.parts import TenantParts
    from contract.readers import find_table_files
    from contract.schema import TABLES
    from contract.streamed import PRELOAD, validate_parts
    from core.output import plain_console
    from core.progress import events_bar
    from core.settings import get_settings
    from core.workers import start_pool

    console = plain_console(stderr=True)
    find_table_files(data)  # a wrong --data fails first, before the checks of --out
    check_out_dir(out)
    check_apart(out, data)  # the clean tables have the input's names: they would replace it
    # Parquet: parts of whole tenants (memory follows the largest part, not the directory);
    # CSV and JSON Lines: one part, the files read whole.
    parts = TenantParts(data)
    workers = min(get_settings().validate_workers, len(parts))
    pool = start_pool(workers, PRELOAD) if workers > 1 else None
    try:
        with events_bar("validating", console, total=parts.streamed) as progress:
            planned = sum(p.events for p in parts.parts) if parts.streamed else None
            task = progress.add_task("validating", total=planned)
            report = validate_parts(parts, out, lambda n: progress.advance(task, n), pool, workers)
    finally:
        if pool is not None:  # on every way out: a pool left to the exit prints there
            pool.shutdown(cancel_futures=True)
    report.print(plain_console())  # its sources are paths: shown as written
    typer.echo(f"wrote {', '.join(sorted(TABLES))} and quarantine to {out}")
