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
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from contract.parts import TenantParts
    from contract.readers import find_table_files, read_table_file
    from contract.schema import TABLES
    from contract.validate import validate_raw_arrow

    console = Console(stderr=True)
    files = find_table_files(data)
    check_out_dir(out)
    check_apart(out, data)  # the clean tables have the input's names: they would replace it
    parts = TenantParts(data)  # Parquet: planned on the tenant ids; CSV, JSON Lines: one part
    if len(parts) > 1:
        from contract.streamed import PRELOAD, validate_parts
        from core.progress import events_bar
        from core.settings import get_settings
        from core.workers import start_pool

        # Part by part (whole tenants): memory follows the largest part, not the directory.
        workers = min(get_settings().validate_workers, len(parts))
        pool = start_pool(workers, PRELOAD) if workers > 1 else None
        try:
            with events_bar("validating", console, total=True) as progress:
                task = progress.add_task("validating", total=sum(p.events for p in parts.parts))
                report = validate_parts(
                    parts, out, lambda n: progress.advance(task, n), pool, workers
                )
        finally:
            if pool is not None:  # on every way out: a pool left to the exit prints there
                pool.shutdown(cancel_futures=True)
        report.print(Console())
        typer.echo(f"wrote {', '.join(sorted(TABLES))} and quarantine to {out}")
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,  # an error must stay the only line on stderr
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("reading", total=len(files) + 2)
        raws = {}
        for name, path in files.items():
            progress.update(task, description=f"reading {path.name}")
            raws[name] = read_table_file(path, name)
            progress.advance(task)
        progress.update(task, description="validating")
        # Arrow from the files to the clean files: no Python object per clean value (about
        # half the CPU and two thirds of the memory of building pandas frames to write them)
        validated = validate_raw_arrow(raws, extras=True)
        progress.advance(task)
        progress.update(task, description=f"writing {out}")
        validated.write(out)
        progress.advance(task)
    validated.report.print(Console())
    typer.echo(f"wrote {', '.join(sorted(validated.tables))} and quarantine to {out}")
