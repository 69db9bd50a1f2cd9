"""Reading a data directory in parts of whole tenants, so that memory follows the largest tenant.

Every rule of the contract looks at one row, or at rows of one tenant (a message is
(tenant_id, message_id), an event belongs to a message of its tenant, a duplicate is a repeated
(tenant_id, event_id)), so validating each part on its own keeps and quarantines the rows that
validating the whole directory does. One reason looks further: an event whose message only
another tenant keeps is a "tenant mismatch with message", not an "unknown message", and that
tenant may sit in another part; :meth:`TenantParts.settle` names those rows after the parts.
Rows without a tenant are a part of their own (they are quarantined anyway).

Parquet tables are read lazily: only the tenant_id columns up front, then each file once, in
order, in batches whose rows wait for their part. When the files are grouped by tenant (as
exports and the simulator write them) about one part waits at a time; otherwise rows wait longer
(at worst, for a file in random order, most of it, as compact Arrow data). CSV and JSON Lines
tables are read whole and give one part.

Row numbers in the quarantine stay those of the input file.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contract.columns import decoded, parse_text, to_numpy_bool
from contract.counts import Report, TableReport
from contract.readers import (
    RawTable,
    _is_text_type,
    _is_utf8,
    _one_line,
    _set_aside_invalid_text,
    check_required_columns,
    empty_raw,
    find_table_files,
    read_table_file,
)
from contract.schema import TABLES
from core.errors import BotfilterError

# Events per part: large enough that per-part fixed costs vanish, small enough that a part's
# frames (about 1.5 KB per event while validated and scored, 0.8 KB read) stay a few hundred MB
# in each worker, with two or three parts in flight. 60k rather than 100k: `botfilter score` on
# 2.65M events peaked at 1,871-1,891 MiB PSS instead of 1,905-1,967, for the same CPU.
PART_EVENTS = 60_000
# The events of the last TAIL_PARTS parts' worth are cut into quarter parts. Parts are
# processed side by side and the run ends with the last one: a worker finishing a full part
# alone left the others idle for that long (0.8 s of one core at the end of a 14 s
# `botfilter score` on 2.65M events).
TAIL_PARTS = 2
# Rows per Parquet batch read: what a part holds beyond its own rows while it is assembled.
_BATCH_ROWS = 65_536


class _ParquetRows:
    """One Parquet file read once, in order, in batches; each batch's rows go to their part.

    Parts are taken in order. Rows read ahead for later parts wait in memory until their part
    is taken: when the file is grouped by tenant that is at most about one part.
    """

    def __init__(
        self, path: Path, table: str, contract_only: bool = False, dictionaries: bool = False
    ) -> None:
        self.path = path
        self.table = table
        self.file = self._read(lambda: pq.ParquetFile(path))
        self.num_rows = self.file.metadata.num_rows
        names = self.file.schema_arrow.names
        check_required_columns(names, TABLES[table], str(path))
        # None: every column. With contract_only, extra columns are never decoded.
        self.columns = _contract_names(names, table) if contract_only else None
        self.schema = (
            pa.schema([self.file.schema_arrow.field(n) for n in self.columns])
            if self.columns is not None
            else self.file.schema_arrow
        )
        # Text columns read as dictionaries: a few values repeated (tenants, event types, User-Agents,
        # links) are decoded once per row group instead of once per row, and a part holds
        # each value once, so it is written to and read from memory once for the workers.
        self.coded: list[str] = []
        if dictionaries:
            self.coded = coded = self._few_valued()
            if coded:
                self.file = self._read(lambda: pq.ParquetFile(path, read_dictionary=coded))
                self.schema = pa.schema(
                    [self.file.schema_arrow.field(n) for n in self.schema.names]
                )
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._read_to = 0  # rows read so far (the file's row number of the next row)
        self._base = 0  # the file's row number of ``_part_of[0]``
        self._waiting: dict[int, list[pa.RecordBatch]] = {}
        self._part_of: np.ndarray | None = None
        self._last: np.ndarray | None = None

    def _few_valued(self) -> list[str]:
        """The text columns to read as dictionaries: those whose first batch holds an eighth
        as many distinct values as rows or fewer (with many values, as for addresses or
        contacts, reading a dictionary costs more than the plain text)."""
        text = [f.name for f in self.schema if pa.types.is_string(f.type)]
        if not text or self.num_rows == 0:
            return []
        batches = self.file.iter_batches(batch_size=_BATCH_ROWS, columns=text, use_threads=False)
        head = self._read(lambda: next(batches, None))
        if head is None:
            return []
        return [
            name
            for name, column in zip(text, head.columns, strict=True)
            if pc.count_distinct(column).as_py() * 8 <= len(column)
        ]

    def tenant_ids(self) -> pa.ChunkedArray:
        """The tenant_id column, dictionary-encoded as stored (tenants are few: no string is
        built per row; a tenth of the time of reading it as text and encoding it)."""
        stored = self.file.schema_arrow.field("tenant_id").type
        if (
            pa.types.is_nested(stored)
            or pa.types.is_dictionary(stored)
            and pa.types.is_nested(stored.value_type)
        ):
            # as validation says it of any column (it would be the first to read it)
            raise BotfilterError(
                f"{self.path}: column tenant_id is stored as {stored}, which cannot hold str values"
            )
        file = self._read(lambda: pq.ParquetFile(self.path, read_dictionary=["tenant_id"]))
        return self._read(lambda: file.read(columns=["tenant_id"]))["tenant_id"]

    def _read(self, how):  # noqa: ANN001, ANN202
        try:
            return how()
        except (OSError, pa.ArrowException) as exc:
            raise BotfilterError(f"{self.path}: cannot read file: {_one_line(exc)}") from exc

    def assign(self, part_of: np.ndarray, n_parts: int) -> None:
        """The part of each row (as planned), before the first :meth:`take`."""
        self._span(part_of, n_parts, 0, None)

    def assign_span(
        self, part_of: np.ndarray, n_parts: int, start: int, groups: Sequence[int]
    ) -> None:
        """Like :meth:`assign`, for a reader of only some parts: it reads row groups
        ``groups`` (consecutive; their first row is row ``start`` of the file), ``part_of``
        giving the part of each of their rows, -1 for rows of other readers' parts (dropped)."""
        self._span(part_of, n_parts, start, list(groups))

    def _span(
        self, part_of: np.ndarray, n_parts: int, start: int, groups: list[int] | None
    ) -> None:
        self._part_of, self._base, self._read_to = part_of, start, start
        self._last = np.full(n_parts, -1, dtype=np.int64)
        mine = part_of >= 0
        np.maximum.at(self._last, part_of[mine], start + np.flatnonzero(mine))
        if groups == []:
            self._batches = iter(())
            return
        self._batches = iter(
            self.file.iter_batches(
                batch_size=_BATCH_ROWS, row_groups=groups, columns=self.columns, use_threads=False
            )
        )

    def _read_through(self, part: int) -> list[pa.RecordBatch]:
        """Read on to the last row of ``part`` (later parts' rows wait); ``part``'s pieces."""
        batches, part_of, last = self._batches, self._part_of, self._last
        if batches is None or part_of is None or last is None:
            raise RuntimeError("_ParquetRows.assign() must come before take()")
        while self._read_to <= last[part]:
            batch = self._read(lambda: next(batches))
            at = self._read_to - self._base
            owners = part_of[at : at + batch.num_rows]
            self._read_to += batch.num_rows
            for owner, piece in _pieces(batch, owners):
                if owner >= 0:  # -1: another reader's rows (assign_span)
                    self._waiting.setdefault(owner, []).append(piece)
        return self._waiting.pop(part, [])

    def drop(self, part: int) -> None:
        """Pass over part ``part``'s rows (read, never assembled nor checked)."""
        self._read_through(part)

    def take(self, part: int, rows: np.ndarray) -> RawTable:
        """Part ``part``'s rows (``rows``: their positions, increasing), as
        :func:`contract.readers.read_table_file` would give them (text that is not UTF-8 set aside),
        except that the columns of :attr:`coded` may be dictionaries (see :func:`decoded`)."""
        pieces = self._read_through(part)
        schema = self.schema
        data = pa.Table.from_batches(pieces, schema) if pieces else schema.empty_table()
        if self.coded:
            data = data.unify_dictionaries()
        return self._raw(data, rows)

    def _raw(self, data: pa.Table, rows: np.ndarray) -> RawTable:
        """``data`` (the file's rows ``rows``) as a raw table; rows whose text is not UTF-8
        are set aside as :func:`contract.readers.read_table_file` sets them aside."""
        try:
            data.validate(full=True)  # Parquet readers let invalid UTF-8 through
        except pa.ArrowInvalid:
            data = decoded(data)
            local_raw = _set_aside_invalid_text(RawTable(self.table, str(self.path), data))
            return RawTable(
                self.table,
                str(self.path),
                local_raw.data,
                row_numbers=rows[local_raw.row_number_array()],
                rejected=[(int(rows[p]), text, why) for p, text, why in local_raw.rejected],
            )
        return RawTable(self.table, str(self.path), data, row_numbers=rows)

    def named(self, ids: pa.Array) -> RawTable:
        """The rows (every column read, as plain text) whose ``message_id``, parsed as the
        contract parses it, is one of ``ids``: one more pass over the file, batch by batch."""
        file = self._read(lambda: pq.ParquetFile(self.path))
        batches = file.iter_batches(batch_size=_BATCH_ROWS, columns=self.columns, use_threads=False)
        pieces: list[pa.Table] = []
        rows: list[np.ndarray] = []
        start = 0
        while (batch := self._read(lambda: next(batches, None))) is not None:
            raw = self._raw(pa.Table.from_batches([batch]), np.arange(start, start + len(batch)))
            start += len(batch)
            parsed = parse_text(raw.data["message_id"]).values
            hits = np.flatnonzero(to_numpy_bool(pc.is_in(parsed, value_set=ids)))
            if len(hits):
                pieces.append(raw.data.take(hits))
                rows.append(raw.row_number_array()[hits])
        if not pieces:
            empty = file.schema_arrow.empty_table()
            data = empty if self.columns is None else empty.select(self.columns)
            return RawTable(self.table, str(self.path), data, row_numbers=np.zeros(0, np.int64))
        data = pa.concat_tables(pieces)
        return RawTable(self.table, str(self.path), data, row_numbers=np.concatenate(rows))


def _pieces(batch: pa.RecordBatch, owners: np.ndarray) -> list[tuple[int, pa.RecordBatch]]:
    """The rows of ``batch`` per part (``owners``: the part of each row), in row order.

    A file grouped by tenant gives each part one run of rows per batch: those are zero-copy
    slices (filtering copied every row read, a tenth of the reading process's CPU)."""
    if len(owners) == 0:
        return []
    cuts = np.flatnonzero(owners[1:] != owners[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    run_owners = owners[starts]
    if len(np.unique(run_owners)) == len(run_owners):  # each part one run
        ends = np.append(cuts, len(owners))
        return [
            (int(o), batch.slice(int(a), int(b - a)))
            for o, a, b in zip(run_owners, starts, ends, strict=True)
        ]
    return [(int(o), batch.filter(pa.array(owners == o))) for o in np.unique(owners)]


@dataclass
class Part:
    """One part: the source rows of each table (increasing positions) and its event count."""

    rows: dict[str, np.ndarray]
    events: int

    @property
    def rows_count(self) -> int:
        """Rows of every table."""
        return sum(len(r) for r in self.rows.values())


def _codes(
    tenants: dict[str, pa.ChunkedArray], lookup: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """One tenant code space across tables (-1: no tenant); ``lookup`` receives each tenant's
    code. Tenants are the ids as the contract reads them (``" t1 "`` is ``t1``): parts are
    whole tenants as validation will see them, or one tenant's rows would be split between
    parts, each recomputed as the whole tenant, the last one's numbers winning."""
    lookup = {} if lookup is None else lookup
    out: dict[str, np.ndarray] = {}
    for name, column in tenants.items():
        pieces = [np.zeros(0, dtype=np.int64)]
        for chunk in column.chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = pc.dictionary_encode(chunk.cast(pa.string()))
            values = parse_text(_valid_text(chunk.dictionary)).values.to_pylist()
            # the last slot is what a null index (no tenant) picks
            mapping = [-1 if v is None else lookup.setdefault(v, len(lookup)) for v in values]
            codes = np.array([*mapping, -1], dtype=np.int64)
            indices = pc.fill_null(chunk.indices, len(values)).to_numpy(zero_copy_only=False)
            pieces.append(codes[indices])
        out[name] = np.concatenate(pieces)
    return out


def _valid_text(values: pa.Array) -> pa.Array:
    """``values`` as text, the ones that are not UTF-8 as nulls (their rows have no tenant to
    plan by; the reader sets them aside as ``invalid UTF-8 text``)."""
    if _is_text_type(values.type):
        try:
            values.validate(full=True)
            return values.cast(pa.string())
        except pa.ArrowInvalid:
            values = values.cast(pa.binary())
    elif not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        return values.cast(pa.string())
    raws = values.to_pylist()
    text = [raw.decode("utf-8") if raw is not None and _is_utf8(raw) else None for raw in raws]
    return pa.array(text, pa.string())


def plan_parts(
    codes: dict[str, np.ndarray],
    part_events: int = PART_EVENTS,
    assignments: dict[str, np.ndarray] | None = None,
) -> list[Part]:
    """Whole tenants packed into parts of about ``part_events`` events.

    Tenants come in the order their first event appears (then tenants without events), so
    concatenating the parts' events gives the file's order when the file is grouped by tenant.
    The last :data:`TAIL_PARTS` parts' worth of events go in parts of a quarter of the size.
    Rows without a tenant form the last part. ``assignments``, if given, receives the part of
    each row per table.
    """
    n_codes = 1 + max((int(c.max(initial=-1)) for c in codes.values()), default=-1)
    events = codes["events"]
    counts = np.bincount(events[events >= 0], minlength=n_codes)
    first = np.full(n_codes, np.iinfo(np.int64).max)
    np.minimum.at(first, events[events >= 0], np.arange(len(events))[events >= 0])
    order = np.lexsort((np.arange(n_codes), first))
    # int32 where rows are counted in millions (a part number, a row position): the plan lives
    # for the whole run in the process that reads the files.
    part_of = np.empty(n_codes + 1, dtype=np.int32)  # the last slot: rows without a tenant
    part, filled, open_ = 0, 0, False
    left = int(counts.sum())
    tail = max(part_events // 4, 1)
    for code in order:
        part_of[code], open_ = part, True
        filled += counts[code]
        left -= int(counts[code])
        # (tenants without events, last in order, join the last part that has events)
        if left and filled >= (part_events if left >= TAIL_PARTS * part_events else tail):
            part, filled, open_ = part + 1, 0, False
    n_parts = part + open_
    part_of[n_codes] = n_parts
    if any((c < 0).any() for c in codes.values()) or n_parts == 0:
        n_parts += 1  # rows without a tenant; or one empty part, so that every table reports
    parts_rows: list[dict[str, np.ndarray]] = [{} for _ in range(n_parts)]
    for name, table_codes in codes.items():
        assigned = part_of[np.where(table_codes < 0, n_codes, table_codes)]
        if assignments is not None:
            assignments[name] = assigned
        by_part = np.argsort(assigned, kind="stable")
        if len(by_part) < np.iinfo(np.int32).max:
            by_part = by_part.astype(np.int32)
        bounds = np.searchsorted(assigned[by_part], np.arange(n_parts + 1))
        for p in range(n_parts):
            parts_rows[p][name] = by_part[bounds[p] : bounds[p + 1]]
    return [Part(rows, int(len(rows["events"]))) for rows in parts_rows]


class TenantParts:
    """The parts of one data directory (planned on creation); take their raw tables in order.

    ``contract_only``: read only the contract's columns. Extra columns are "kept and ignored"
    (PRODUCT.md); a caller that writes no clean tables (``botfilter score``) need not decode
    them: the simulator's label columns were a fifth of the events file.
    """

    def __init__(
        self,
        data_dir: Path,
        part_events: int = PART_EVENTS,
        contract_only: bool = False,
        dictionaries: bool = False,
    ) -> None:
        self.files = find_table_files(data_dir)
        self.contract_only = contract_only
        self.streamed = all(path.suffix.lower() == ".parquet" for path in self.files.values())
        self._sources: dict[str, _ParquetRows] = {}
        self.parts: list[Part] = [Part({}, 0)]  # CSV / JSON Lines: one part, the whole files
        self._tenants: list[list[str]] | None = None
        self._next = 0
        if self.streamed:
            self._sources = {
                name: _ParquetRows(path, name, contract_only, dictionaries)
                for name, path in self.files.items()
            }
            tenants = {name: source.tenant_ids() for name, source in self._sources.items()}
            assigned: dict[str, np.ndarray] = {}
            lookup: dict[str, int] = {}
            codes = _codes(tenants, lookup)
            self.parts = plan_parts(codes, part_events, assigned)
            self._tenants = _tenants_with_messages(codes, assigned, lookup, len(self.parts))
            for name, source in self._sources.items():
                source.assign(assigned[name], len(self.parts))
            del tenants
            # Arrow's allocator keeps what it freed (the tenant ids: ~125 MiB for 6M rows)
            # for later use, which is never: hand it back.
            pa.default_memory_pool().release_unused()

    def __len__(self) -> int:
        return len(self.parts)

    @property
    def sources(self) -> Mapping[str, _ParquetRows]:
        """The Parquet readers of each table (none for CSV and JSON Lines)."""
        return self._sources

    @property
    def fresh(self) -> bool:
        """No part has been taken or passed over yet."""
        return self._next == 0

    def tenants(self, i: int) -> list[str] | None:
        """The tenants with message rows in part ``i`` (clean or not), as planned; None when
        unknown before reading (CSV and JSON Lines: one part, read whole)."""
        return None if self._tenants is None else self._tenants[i]

    def skip(self, i: int) -> None:
        """Pass over part ``i`` (the next in order) without assembling or checking its rows."""
        self._step(i)
        for source in self._sources.values():
            source.drop(i)

    def _step(self, i: int) -> None:
        if i != self._next:
            raise ValueError(f"parts are read in order: expected part {self._next}, got {i}")
        self._next += 1

    def raw(self, i: int, keep: Mapping[str, Collection[str]] | None = None) -> dict[str, RawTable]:
        """The raw tables of part ``i``, as :func:`contract.readers.read_data_dir` would give them,
        except the dictionary columns that ``keep`` names per table (as :func:`unshare_raw`).

        Parts are read in one pass over the files: take them in order, each once (by this
        method or :meth:`share`).
        """
        self._step(i)
        return _decoded_raws(self._read_part(i), keep)

    def share(self, i: int, stem: Path) -> dict[str, SharedTable]:
        """Part ``i``'s raw tables handed to a worker process (:func:`share_raw`), its text
        read as dictionaries (``dictionaries``) staying so until :func:`unshare_raw`."""
        self._step(i)
        return share_raw(self._read_part(i), stem)

    def settle(self, report: Report, elsewhere: set[str] | None = None) -> Report:
        """``report`` (the parts' counts added up) with the events that name a message only
        another tenant keeps counted as "tenant mismatch with message", as validating the whole
        directory counts them: their own part, which holds no other tenant, said "unknown
        message". ``elsewhere``: :meth:`kept_elsewhere` of the report's unknown message ids, when
        the caller has it already (else only the messages naming them are read and checked)."""
        events = report.tables.get("events")
        if events is None or not events.unknown_messages:
            return report
        from contract.validate import REASON_TENANT_MISMATCH, REASON_UNKNOWN_MESSAGE

        if elsewhere is None:
            elsewhere = self.kept_elsewhere(events.unknown_messages)
        moved = sum(1 for message_id in events.unknown_messages if message_id in elsewhere)
        if not moved:
            return report
        quarantined = dict(events.quarantined)
        quarantined[REASON_UNKNOWN_MESSAGE] -= moved
        if not quarantined[REASON_UNKNOWN_MESSAGE]:
            del quarantined[REASON_UNKNOWN_MESSAGE]
        quarantined[REASON_TENANT_MISMATCH] = quarantined.get(REASON_TENANT_MISMATCH, 0) + moved
        unknown = [m for m in events.unknown_messages if m not in elsewhere]
        settled = replace(events, quarantined=quarantined, unknown_messages=unknown)
        return replace(report, tables={**report.tables, "events": settled})

    def kept_elsewhere(self, ids: Collection[str]) -> set[str]:
        """Which of the message ids ``ids`` (that parts found no kept message of their own
        tenant for) a message of another tenant keeps; only the messages naming them are read
        again and checked. Nothing is read when every tenant was validated in one part."""
        if not ids or not self.streamed or len(self) < 2:
            return set()
        # Imported here: the validator is only needed on this rare path (and imports pandas).
        from contract.validate import validate_raw

        candidates = self._sources["messages"].named(pa.array(sorted(set(ids)), pa.string()))
        kept = validate_raw({"messages": candidates, "events": empty_raw("events")}).messages
        return set(kept["message_id"])

    def spans(self, readers: int, slack: float = 1.5) -> list[Span] | None:
        """The parts as runs of consecutive parts, each with the row groups holding its rows,
        for readers that work apart (Spark tasks): as many runs as ``readers`` when that makes
        the readers decode at most ``slack`` times the rows between them (each decodes every
        row of its row groups up to its last one), else fewer; one run reads the files once,
        like :meth:`raw`. None for CSV or JSON Lines.

        Files grouped by tenant allow a run per reader once each holds a few row groups. Runs
        are cut so that the one decoding the most rows decodes as few as possible: a reader
        starting inside a row group decodes its start too."""
        if not self.streamed or not self._sources:
            return None
        bounds = {name: _row_group_bounds(src.file) for name, src in self._sources.items()}
        total = max(sum(src.num_rows for src in self._sources.values()), 1)
        for runs in range(max(1, min(readers, len(self.parts))), 0, -1):
            cuts = self._cuts(runs, bounds)
            spans = [self._run(a, b, bounds) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
            decoded = sum(t.decoded for span in spans for t in span.tables.values())
            if runs == 1 or decoded <= slack * total:
                return spans
        raise AssertionError("unreachable: one run always reads the files once")

    def _cuts(self, runs: int, bounds: dict[str, np.ndarray]) -> list[int]:
        """The first part of each of ``runs`` runs, then the number of parts: each cut where
        the larger of the run before it and an equal share of the rest decodes least."""
        n = len(self.parts)
        ends = {
            name: np.array(
                [(r[0], r[-1]) if len(r) else (-1, -1) for r in (p.rows[name] for p in self.parts)],
                dtype=np.int64,
            ).reshape(n, 2)
            for name in self._sources
        }

        done = np.concatenate(([0], np.cumsum([p.rows_count for p in self.parts])))

        def work(a: int, b: int) -> float:
            """Rows decoded, plus their own rows four times over: validating a row and
            writing it out cost about four times decoding it (a Spark validation task on the
            1M world: 1.3 s reading 3.4M rows, 4.6 s validating and writing them)."""
            rows = 4.0 * float(done[b] - done[a])
            for name, pairs in ends.items():
                own = pairs[a:b][pairs[a:b, 0] >= 0]
                if len(own):
                    edges = bounds[name]
                    start = edges[np.searchsorted(edges, own[:, 0].min(), side="right") - 1]
                    rows += int(own[:, 1].max()) + 1 - int(start)
            return rows

        cuts = [0]
        for r in range(1, runs):
            left = runs - r  # runs from this cut on
            cuts.append(
                min(
                    range(cuts[-1] + 1, n - left + 1),
                    key=lambda p: (max(work(cuts[-1], p), work(p, n) / left), p),
                )
            )
        return [*cuts, n]

    def _run(self, a: int, b: int, bounds: dict[str, np.ndarray]) -> Span:
        """Parts ``a`` to ``b - 1`` as one run."""
        tables: dict[str, TableSpan] = {}
        for name, source in self._sources.items():
            assert source._part_of is not None  # assigned on creation
            own = [self.parts[p].rows[name] for p in range(a, b) if len(self.parts[p].rows[name])]
            if not own:
                tables[name] = TableSpan(str(source.path), (), 0, np.zeros(0, np.int32), 0)
                continue
            edges = bounds[name]
            lo, hi = min(int(r[0]) for r in own), max(int(r[-1]) for r in own)
            g0 = int(np.searchsorted(edges, lo, side="right")) - 1
            g1 = int(np.searchsorted(edges, hi, side="right")) - 1
            start = int(edges[g0])
            # to the end of the last group: a batch read may pass the run's last row
            part_of = source._part_of[start : int(edges[g1 + 1])].astype(np.int32) - a
            part_of[(part_of < 0) | (part_of >= b - a)] = -1
            tables[name] = TableSpan(
                str(source.path), tuple(range(g0, g1 + 1)), start, part_of, hi + 1 - start
            )
        return Span(a, b - a, tables, self.contract_only)

    def _read_part(self, i: int) -> dict[str, RawTable]:
        if not self.streamed:
            raws = {name: read_table_file(path, name) for name, path in self.files.items()}
            return (
                {name: _contract_columns(raw) for name, raw in raws.items()}
                if self.contract_only
                else raws
            )
        rows = self.parts[i].rows
        return {
            name: source.take(i, rows[name].astype(np.int64))
            for name, source in self._sources.items()
        }


@dataclass(frozen=True)
class TableSpan:
    """What one reader of some consecutive parts reads of one Parquet table: the row groups
    ``groups`` (consecutive, the first starting at the file's row ``start``) and, for each of
    their rows, its part among the reader's (-1: another reader's row, read and dropped)."""

    path: str
    groups: tuple[int, ...]
    start: int
    part_of: np.ndarray
    decoded: int  # rows read up to the last of the reader's own


@dataclass(frozen=True)
class Span:
    """Consecutive parts of a plan that one reader (a Spark task) reads on its own, from the
    row groups that hold their rows, without reading the files from the start."""

    first: int  # the plan's number of the span's first part
    count: int
    tables: dict[str, TableSpan]
    contract_only: bool = True

    def raws(self) -> Iterator[dict[str, RawTable]]:
        """The raw tables of each of the span's parts in turn, as :meth:`TenantParts.raw`
        gives them."""
        sources: dict[str, _ParquetRows] = {}
        rows: dict[str, list[np.ndarray]] = {}
        for name, table in self.tables.items():
            source = _ParquetRows(Path(table.path), name, self.contract_only)
            source.assign_span(table.part_of, self.count, table.start, table.groups)
            sources[name] = source
            order = np.argsort(table.part_of, kind="stable")
            bounds = np.searchsorted(table.part_of[order], np.arange(self.count + 1))
            rows[name] = [
                table.start + order[bounds[k] : bounds[k + 1]].astype(np.int64)
                for k in range(self.count)
            ]
        for k in range(self.count):
            yield _decoded_raws(
                {name: source.take(k, rows[name][k]) for name, source in sources.items()}, None
            )


def _row_group_bounds(file: pq.ParquetFile) -> np.ndarray:
    """The first row of each row group, and the file's row count last."""
    meta = file.metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    return np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))


def _tenants_with_messages(
    codes: dict[str, np.ndarray],
    assigned: dict[str, np.ndarray],
    lookup: dict[str, int],
    n_parts: int,
) -> list[list[str]]:
    """Per part, the tenants (in code order) that have rows in the messages table."""
    names = list(lookup)  # in code order
    out: list[list[str]] = [[] for _ in range(n_parts)]
    m_codes = codes["messages"]
    has = m_codes >= 0
    # A (part, tenant) table marked row by row: linear, where np.unique(axis=1) sorted 2-column
    # rows as opaque bytes (2.4 s of a 27 s `botfilter score` on 3.84M messages).
    seen = np.zeros((n_parts, len(names)), dtype=bool)
    seen[assigned["messages"][has], m_codes[has]] = True
    for part, code in zip(*np.nonzero(seen), strict=True):
        out[part].append(names[code])
    return out


def _contract_names(names: list[str], table: str) -> list[str]:
    """The contract's columns among ``names``, in their order."""
    return [n for n in names if n in TABLES[table].names]


def _contract_columns(raw: RawTable) -> RawTable:
    """``raw`` without its extra columns."""
    return replace(raw, data=raw.data.select(_contract_names(raw.data.column_names, raw.name)))


def iter_raw_parts(data_dir: Path, part_events: int = PART_EVENTS) -> Iterator[dict[str, RawTable]]:
    """The raw tables of ``data_dir`` part by part (see the module docstring)."""
    parts = TenantParts(data_dir, part_events)
    for i in range(len(parts)):
        yield parts.raw(i)


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
            total.unknown_messages += t.unknown_messages
    merged = Report(tables)
    merged.check()
    return merged


# --- parts handed to worker processes -----------------------------------------------------------
# Parts travel to the workers as Arrow IPC files in memory (tmpfs), which a worker maps: through
# the pool's pipe they were pickled, written, read and unpickled (a sixth of the CPU of a run).


def shm_dir() -> str | None:
    """Where parts wait for a worker: memory (/dev/shm) when writable, else the default temp."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@dataclass(frozen=True)
class SharedTable:
    """A raw table whose Arrow data waits in ``path`` (``raw.data`` is empty)."""

    raw: RawTable
    path: str


def share_raw(raws: dict[str, RawTable], stem: Path) -> dict[str, SharedTable]:
    """A part's raw tables as Arrow IPC files named from ``stem``, for another process: it maps
    them (:func:`unshare_raw`) instead of unpickling a copy."""
    shared = {}
    for name, raw in raws.items():
        path = f"{stem}-{name}.arrow"
        write_ipc(raw.data, path)
        shared[name] = SharedTable(replace(raw, data=raw.data.schema.empty_table()), path)
    return shared


def write_ipc(table: pa.Table, path: str) -> None:
    """``table`` as an Arrow IPC file at ``path``."""
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_ipc(path: str) -> pa.Table:
    """The table of :func:`write_ipc`'s file, which is removed."""
    table = pa.ipc.open_file(pa.memory_map(path)).read_all()  # maps, copies nothing
    os.unlink(path)  # the mapping stays valid; the memory goes with the last reference
    return table


def unshare_raw(
    shared: dict[str, SharedTable], keep: Mapping[str, Collection[str]] | None = None
) -> dict[str, RawTable]:
    """The raw tables of :func:`share_raw` (their files are removed), text as text except the
    dictionary columns that ``keep`` names per table (see :data:`contract.validate.CODED`)."""
    return _decoded_raws(
        {name: replace(item.raw, data=read_ipc(item.path)) for name, item in shared.items()}, keep
    )


def _decoded_raws(
    raws: dict[str, RawTable], keep: Mapping[str, Collection[str]] | None
) -> dict[str, RawTable]:
    keep = keep or {}
    return {
        name: replace(raw, data=decoded(raw.data, keep.get(name, ()))) for name, raw in raws.items()
    }
