"""Reading a data directory in parts of whole tenants, so that memory follows the largest tenant.

Every rule of the contract looks at one row, or at rows of one tenant (a message is
(tenant_id, message_id), an event belongs to a message of its tenant, a duplicate is a repeated
(tenant_id, event_id)), so validating each part on its own finds what validating the whole
directory finds. Rows without a tenant are a part of their own (they are quarantined anyway).

Parquet tables are read lazily: only the tenant_id columns up front, then each part's rows from
the row groups that hold them (a row group is read once when the file is grouped by tenant, as
exports and the simulator write them; otherwise some row groups are read more than once, never
the whole file at once). CSV and JSON Lines tables are read whole and give one part.

Row numbers in the quarantine stay those of the input file.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from botfilter.errors import BotfilterError
from contract.io import (
    RawTable,
    _one_line,
    _set_aside_invalid_text,
    check_required_columns,
    find_table_files,
    read_table_file,
)
from contract.report import Report, TableReport
from contract.schema import TABLES

# Events per part: large enough that per-part fixed costs vanish, small enough that a part's
# frames (about 1.5 KB per event while validated and scored) stay well under a gigabyte.
PART_EVENTS = 300_000


class _ParquetRows:
    """Rows of one Parquet file by position, read row group by row group with a small cache."""

    def __init__(self, path: Path, table: str) -> None:
        self.path = path
        self.table = table
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise BotfilterError(f"{path}: cannot read file: {_one_line(exc)}") from exc
        meta = self.file.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.num_rows = int(self.starts[-1])
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        check_required_columns(self.file.schema_arrow.names, TABLES[table], str(path))

    def tenant_ids(self) -> pa.ChunkedArray:
        return self._read(lambda: self.file.read(columns=["tenant_id"]))["tenant_id"]

    def _read(self, how):  # noqa: ANN001, ANN202
        try:
            return how()
        except (OSError, pa.ArrowException) as exc:
            raise BotfilterError(f"{self.path}: cannot read file: {_one_line(exc)}") from exc

    def _group(self, g: int) -> pa.Table:
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        table = self._read(lambda: self.file.read_row_group(g))
        self._cache[g] = table
        if len(self._cache) > 2:  # the group a part ends in is usually where the next begins
            self._cache.popitem(last=False)
        return table

    def take(self, rows: np.ndarray) -> RawTable:
        """The rows at these (increasing) positions, as :func:`contract.io.read_table_file`
        would give them (text that is not UTF-8 set aside), with their file row numbers."""
        groups = np.searchsorted(self.starts, rows, side="right") - 1
        pieces = []
        for g in np.unique(groups):
            local = rows[groups == g] - self.starts[g]
            pieces.append(self._group(int(g)).take(pa.array(local)))
        data = pa.concat_tables(pieces) if pieces else self.file.schema_arrow.empty_table()
        raw = RawTable(self.table, str(self.path), data, row_numbers=rows)
        try:
            data.validate(full=True)  # Parquet readers let invalid UTF-8 through
        except pa.ArrowInvalid:
            local_raw = _set_aside_invalid_text(RawTable(self.table, str(self.path), data))
            raw = RawTable(
                self.table,
                str(self.path),
                local_raw.data,
                row_numbers=rows[local_raw.row_number_array()],
                rejected=[(int(rows[p]), text, why) for p, text, why in local_raw.rejected],
            )
        return raw

    def drop_cache(self) -> None:
        self._cache.clear()


@dataclass
class Part:
    """One part: the source rows of each table (increasing positions) and its event count."""

    rows: dict[str, np.ndarray]
    events: int


def _codes(tenants: dict[str, pa.ChunkedArray]) -> dict[str, np.ndarray]:
    """One tenant code space across tables (-1: no tenant)."""
    names = list(tenants)
    chunks = [c for name in names for c in tenants[name].chunks if len(c)]
    if not chunks:
        return {name: np.zeros(0, dtype=np.int64) for name in names}
    encoded = pc.dictionary_encode(pa.chunked_array(chunks).cast(pa.string()))
    codes = np.concatenate(
        [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False) for c in encoded.chunks]
    ).astype(np.int64)
    out, start = {}, 0
    for name in names:
        out[name] = codes[start : start + len(tenants[name])]
        start += len(tenants[name])
    return out


def plan_parts(codes: dict[str, np.ndarray], part_events: int = PART_EVENTS) -> list[Part]:
    """Whole tenants packed into parts of about ``part_events`` events.

    Tenants come in the order their first event appears (then tenants without events), so
    concatenating the parts' events gives the file's order when the file is grouped by tenant.
    Rows without a tenant form the last part.
    """
    n_codes = 1 + max((int(c.max(initial=-1)) for c in codes.values()), default=-1)
    events = codes["events"]
    counts = np.bincount(events[events >= 0], minlength=n_codes)
    first = np.full(n_codes, np.iinfo(np.int64).max)
    np.minimum.at(first, events[events >= 0], np.arange(len(events))[events >= 0])
    order = np.lexsort((np.arange(n_codes), first))
    part_of = np.empty(n_codes + 1, dtype=np.int64)  # the last slot: rows without a tenant
    part, filled, open_ = 0, 0, False
    for code in order:
        part_of[code], open_ = part, True
        filled += counts[code]
        if filled >= part_events:
            part, filled, open_ = part + 1, 0, False
    n_parts = part + open_
    part_of[n_codes] = n_parts
    if any((c < 0).any() for c in codes.values()) or n_parts == 0:
        n_parts += 1  # rows without a tenant; or one empty part, so that every table reports
    parts_rows: list[dict[str, np.ndarray]] = [{} for _ in range(n_parts)]
    for name, table_codes in codes.items():
        assigned = part_of[np.where(table_codes < 0, n_codes, table_codes)]
        by_part = np.argsort(assigned, kind="stable")
        bounds = np.searchsorted(assigned[by_part], np.arange(n_parts + 1))
        for p in range(n_parts):
            parts_rows[p][name] = by_part[bounds[p] : bounds[p + 1]]
    return [Part(rows, int(len(rows["events"]))) for rows in parts_rows]


def iter_raw_parts(data_dir: Path, part_events: int = PART_EVENTS) -> Iterator[dict[str, RawTable]]:
    """The raw tables of ``data_dir`` part by part (see the module docstring)."""
    files = find_table_files(data_dir)
    if any(path.suffix.lower() != ".parquet" for path in files.values()):
        yield {name: read_table_file(path, name) for name, path in files.items()}
        return
    sources = {name: _ParquetRows(path, name) for name, path in files.items()}
    codes = _codes({name: source.tenant_ids() for name, source in sources.items()})
    for part in plan_parts(codes, part_events):
        yield {name: sources[name].take(part.rows[name]) for name in sources}
    for source in sources.values():
        source.drop_cache()


def merge_reports(reports: list[Report]) -> Report:
    """The counts of several parts of the same files, added up."""
    tables: dict[str, TableReport] = {}
    for report in reports:
        for name, t in report.tables.items():
            if name not in tables:
                tables[name] = TableReport(t.table, t.source, 0, 0, 0, {})
            total = tables[name]
            total.read += t.read
            total.kept += t.kept
            total.duplicates += t.duplicates
            for reason, rows in t.quarantined.items():
                total.quarantined[reason] = total.quarantined.get(reason, 0) + rows
    merged = Report(tables)
    merged.check()
    return merged
