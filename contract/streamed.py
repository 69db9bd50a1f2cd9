"""``botfilter validate`` part by part: the clean files and the quarantine written as the parts
are validated, so that memory follows the largest part (whole tenants), not the directory.

Each part is validated as :func:`contract.validate.validate_raw_arrow` validates a whole
directory, and its clean rows are appended to the clean files. The files hold the rows in the
order of the parts: tenant by tenant, which is the input's order when the input is grouped by
tenant (as exports and the simulator write it). The quarantine is sorted as the whole
directory's (table, then row of the input file), and its reasons and the counts are those of
the whole directory (:meth:`contract.parts.TenantParts.settle`).
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contract.counts import Report
from contract.parts import (
    SharedTable,
    TenantParts,
    merge_reports,
    read_ipc,
    shm_dir,
    unshare_raw,
    write_ipc,
)
from contract.readers import write_parquet
from contract.schema import TABLES
from contract.validate import REASON_TENANT_MISMATCH, REASON_UNKNOWN_MESSAGE, validate_raw_arrow

# What the workers' fork server imports once (core.workers.start_pool).
PRELOAD = ("contract.parts", "contract.validate", "contract.streamed")


@dataclass
class _Part:
    """One validated part: its clean tables (or the Arrow IPC files a worker wrote them to),
    its quarantine and its counts."""

    tables: dict[str, pa.Table | str]
    quarantine: pd.DataFrame
    report: Report


def _validate(raws: dict) -> _Part:
    validated = validate_raw_arrow(raws, extras=True)
    return _Part(dict(validated.tables), validated.quarantine, validated.report)


def _validate_shared(shared: dict[str, SharedTable], stem: str) -> _Part:
    """In a worker: validate a part handed over in memory; the clean tables go back the same
    way, as files in memory."""
    part = _validate(unshare_raw(shared))
    for name, table in part.tables.items():
        assert isinstance(table, pa.Table)  # _validate's tables are tables
        write_ipc(table, f"{stem}-{name}.arrow")
        part.tables[name] = f"{stem}-{name}.arrow"
    return part


def validate_parts(
    parts: TenantParts,
    out: Path,
    on_part: Callable[[int], None] | None = None,
    pool: ProcessPoolExecutor | None = None,
    workers: int = 1,
) -> Report:
    """Validate ``parts`` into ``out`` (``NAME.parquet`` per clean table, ``quarantine.parquet``);
    each file appears whole or not at all. ``on_part`` gets each part's events read. With
    ``pool`` (``workers`` processes from :func:`core.workers.start_pool` with :data:`PRELOAD`),
    the parts are validated side by side and written in their order."""
    partial = {name: out / f".{name}.parquet.partial" for name in [*TABLES, "quarantine"]}
    writers: dict[str, pq.ParquetWriter] = {}
    reports: list[Report] = []
    quarantines: list[pd.DataFrame] = []
    unknown: list[str] = []  # the message ids of the "unknown message" rows, in their order

    def write(part: _Part) -> None:
        for name, table in part.tables.items():
            table = read_ipc(table) if isinstance(table, str) else table
            if name not in writers:
                out.mkdir(parents=True, exist_ok=True)  # once a part is read and checked
                writers[name] = pq.ParquetWriter(partial[name], table.schema)
            elif not table.schema.equals(writers[name].schema):
                table = table.cast(writers[name].schema)  # a part's all-null extra column
            writers[name].write_table(table)
        reports.append(part.report)
        quarantines.append(part.quarantine)
        unknown.extend(part.report.tables["events"].unknown_messages)
        if on_part is not None:
            on_part(part.report.tables["events"].read)

    try:
        if pool is None:
            for i in range(len(parts)):
                write(_validate(parts.raw(i)))
        else:
            with tempfile.TemporaryDirectory(prefix="botfilter-validate-", dir=shm_dir()) as tmp:
                pending: deque[Future[_Part]] = deque()
                for i in range(len(parts)):
                    shared = parts.share(i, Path(tmp) / f"part-{i}")
                    stem = str(Path(tmp) / f"clean-{i}")
                    pending.append(pool.submit(_validate_shared, shared, stem))
                    while len(pending) > workers:  # at most one part waits beyond those busy
                        write(pending.popleft().result())
                while pending:
                    write(pending.popleft().result())
        for writer in writers.values():
            writer.close()
        writers.clear()
        elsewhere = parts.kept_elsewhere(unknown)  # read once for the counts and the rows
        report = parts.settle(merge_reports(reports), elsewhere)
        quarantine = settled_quarantine(
            pd.concat(quarantines, ignore_index=True), unknown, elsewhere
        )
        write_parquet(quarantine, partial["quarantine"])
        for name, path in partial.items():
            path.replace(out / f"{name}.parquet")
    finally:
        for writer in writers.values():
            writer.close()
        for path in partial.values():
            path.unlink(missing_ok=True)
    return report


def settled_quarantine(
    quarantine: pd.DataFrame, unknown: list[str], elsewhere: set[str]
) -> pd.DataFrame:
    """The parts' quarantine as the whole directory's: the rows of a message that only another
    tenant keeps say so, and the rows come by table, then by row of the input file."""
    rows = np.flatnonzero(
        (quarantine["table"] == "events").to_numpy()
        & (quarantine["reason"] == REASON_UNKNOWN_MESSAGE).to_numpy()
    )
    if len(rows) != len(unknown):  # each part lists its rows' ids in their order
        raise RuntimeError(f"{len(rows)} unknown-message rows, {len(unknown)} message ids")
    if len(rows):
        moved = rows[np.array([m in elsewhere for m in unknown], dtype=bool)]
        quarantine.loc[moved, "reason"] = REASON_TENANT_MISMATCH
    rank = quarantine["table"].map({name: k for k, name in enumerate(TABLES)})
    order = np.lexsort((quarantine["row_number"].to_numpy(), rank.to_numpy()))
    return quarantine.iloc[order].reset_index(drop=True)
