"""Reading a data directory: find each table's file and read it into Arrow, without judging values.

Readers keep values as close to the file as possible; :mod:`contract.validate` does the typing.

- Parquet: read as stored.
- CSV (UTF-8, header row, RFC 4180 quoting: commas, quotes and newlines inside quoted fields):
  every column is read as text, so identifiers like ``007`` keep their zeros. An empty field is
  the empty string, which validation treats as missing.
- JSON Lines (one object per line, blank lines skipped): JSON types are kept, except that text
  Arrow would turn into timestamps stays text (the offset is parsed later, and the quarantine
  shows the original). A file without records (0 bytes, or only blank lines: the one way to
  write none) is a table without rows, as a CSV file holding only its header is.

``row_number`` counts records from 0: the CSV header is not a record, a newline inside a quoted
field does not start one, and blank JSON lines are not records.

A row the reader cannot split into fields (a CSV row with the wrong number of fields, a JSON line
that is not valid JSON or not an object, text that is not UTF-8) is not fatal: it is kept in
``RawTable.rejected`` and ends up in the quarantine. So is a JSON line (or a pandas row) whose
identifier is an object, an array or a boolean (``invalid identifier: event_id must be a
string, not an object``, the online API's words): written as text it would become an id such
as ``{"a": 1}`` or ``true`` (PRODUCT.md: identifiers are strings; numbers stay accepted as
their digits). The fast Arrow readers handle clean files; a
file they refuse is re-read row by row in Python to find and set aside the broken rows.

A file that cannot be read at all, is empty (0 bytes: a CSV file without its header row), or
lacks a required column, raises :class:`BotfilterError` with one line naming the file and the
column(s). Extensions match in any case (``messages.PARQUET``); a CSV field may be as long as
its file (Python's reader stops at 128 KiB by default).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pj

from contract.columns import id_problem, identifier_reason, json_text, value_text
from contract.schema import TABLES, TableSchema, find_table_files, is_identifier
from core.errors import BotfilterError

if TYPE_CHECKING:  # frames come from callers: reading files into Arrow never imports pandas
    import pandas as pd

REASON_CSV_FIELDS = "wrong number of CSV fields"
REASON_JSON = "unparseable JSON line"
REASON_JSON_OBJECT = "JSON line is not an object"
REASON_UTF8 = "invalid UTF-8 text"


@dataclass
class RawTable:
    """One input table as read, before validation.

    ``data`` holds the rows that could be split into fields; ``row_numbers`` their 0-based record
    numbers in the source (None: 0..len-1); ``records`` their original text when the reader had to
    go row by row; ``lines`` the JSON Lines file to take original text from otherwise (None:
    rebuild it from ``data``); ``rejected`` the rows that could not be split, as
    ``(row_number, original text, reason)``.
    """

    name: str
    source: str
    data: pa.Table
    row_numbers: np.ndarray | None = None
    records: list[str] | None = None
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    lines: Path | None = None

    @property
    def rows_read(self) -> int:
        """Every record of the source, readable or not."""
        return self.data.num_rows + len(self.rejected)

    def row_number_array(self) -> np.ndarray:
        """0-based source record number of each row of ``data``."""
        if self.row_numbers is None:
            return np.arange(self.data.num_rows, dtype=np.int64)
        return self.row_numbers


def read_data_dir(data_dir: Path) -> dict[str, RawTable]:
    """Read every table of a data directory (see :func:`find_table_files`)."""
    return {name: read_table_file(path, name) for name, path in find_table_files(data_dir).items()}


def read_table_file(path: Path, table: str) -> RawTable:
    """Read one table file by extension and check that its required columns are there."""
    schema = TABLES[table]
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            raw = _read_parquet(path, schema)
        elif suffix == ".csv":
            raw = _read_csv(path, schema)
        elif suffix == ".jsonl":
            raw = _read_jsonl(path, schema)
        else:
            raise BotfilterError(f"{path}: unsupported file type (use .parquet, .csv or .jsonl)")
    except (OSError, pa.ArrowException) as exc:
        raise BotfilterError(f"{path}: cannot read file: {_one_line(exc)}") from exc
    check_required_columns(raw.data.column_names, schema, str(path))
    return raw


def check_required_columns(columns: list[str], schema: TableSchema, source: str) -> None:
    """Raise a one-line error naming ``source`` and every required column it lacks."""
    missing = [c for c in schema.required if c not in columns]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise BotfilterError(f"{source}: missing required column{plural}: {', '.join(missing)}")
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise BotfilterError(f"{source}: column {name} appears twice")
        seen.add(name)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- Parquet


def _read_parquet(path: Path, schema: TableSchema) -> RawTable:
    # Imported on use: a CSV or JSON Lines directory never loads the Parquet reader (0.03 s).
    import pyarrow.parquet as pq

    raw = RawTable(schema.name, str(path), pq.read_table(path))
    try:
        raw.data.validate(full=True)  # Parquet readers let invalid UTF-8 through
    except pa.ArrowInvalid:
        return _set_aside_invalid_text(raw)
    return raw


def _set_aside_invalid_text(raw: RawTable) -> RawTable:
    """Move the rows holding text that is not UTF-8 to ``rejected`` (found chunk by chunk, then
    value by value only inside the chunks that fail)."""
    bad = np.zeros(raw.data.num_rows, dtype=bool)
    data, ours = raw.data, set(TABLES[raw.name].names)
    for i, column in enumerate(data.columns):
        if not _is_text_type(column.type):
            continue
        if data.schema.field(i).name not in ours:
            # Extra columns are kept and ignored (PRODUCT.md): one that is not UTF-8 is kept
            # as its bytes, and its row stays (`score`, which never reads them, scored it)
            if not _valid_utf8(column):
                kind = pa.binary() if pa.types.is_string(column.type) else pa.large_binary()
                data = data.set_column(i, data.schema.field(i).name, column.cast(kind))
            continue
        start = 0
        for chunk in column.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid:
                as_bytes = chunk.view(
                    pa.binary() if pa.types.is_string(chunk.type) else pa.large_binary()
                )
                for i, value in enumerate(as_bytes.to_pylist()):
                    if value is not None and not _is_utf8(value):
                        bad[start + i] = True
            start += len(chunk)
    positions = np.flatnonzero(bad)
    if not len(positions):
        return RawTable(
            raw.name, raw.source, data, raw.row_numbers, raw.records, raw.rejected, raw.lines
        )
    broken = data.take(pa.array(positions))
    rows = [
        {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in row.items()}
        for row in _as_binary(broken).to_pylist()
    ]
    rejected = [
        (int(p), _json_text(row), REASON_UTF8) for p, row in zip(positions, rows, strict=True)
    ]
    keep = np.flatnonzero(~bad)
    return RawTable(raw.name, raw.source, data.take(pa.array(keep)), keep, None, rejected)


def _valid_utf8(column: pa.ChunkedArray) -> bool:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _is_text_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _as_binary(table: pa.Table) -> pa.Table:
    """Text columns viewed as bytes (so that invalid UTF-8 can be read into Python)."""
    for i, field_ in enumerate(table.schema):
        if _is_text_type(field_.type):
            kind = pa.binary() if pa.types.is_string(field_.type) else pa.large_binary()
            table = table.set_column(i, field_.name, table.column(i).cast(kind))
    return table


# --------------------------------------------------------------------------- CSV


def _read_csv(path: Path, schema: TableSchema) -> RawTable:
    header = _csv_header(path)
    check_required_columns(header, schema, str(path))
    try:
        data = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return _read_csv_rows(path, schema, header)
    return RawTable(schema.name, str(path), data)


@contextlib.contextmanager
def _csv_fields_up_to(path: Path) -> Iterator[None]:
    """Let Python's CSV reader take fields as long as the file (its default stops at 128 KiB,
    which would fail a whole file for one long User-Agent or URL)."""
    before = csv.field_size_limit()
    csv.field_size_limit(max(before, min(path.stat().st_size + 1, sys.maxsize)))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _csv_header(path: Path) -> list[str]:
    # surrogateescape: the reader decodes ahead, so a bad byte further down must not fail here
    with (
        _csv_fields_up_to(path),
        path.open("r", encoding="utf-8-sig", newline="", errors="surrogateescape") as handle,
    ):
        try:
            header = next(csv.reader(handle), None)
        except csv.Error as exc:
            raise BotfilterError(f"{path}: cannot read the header row: {_one_line(exc)}") from exc
    if not header:
        raise BotfilterError(f"{path}: empty file, expected a header row with the column names")
    if any(_has_surrogates(name) for name in header):
        raise BotfilterError(f"{path}: the header row is not UTF-8 text")
    return header


def _read_csv_rows(path: Path, schema: TableSchema, header: list[str]) -> RawTable:
    """Row-by-row CSV reading for files Arrow refuses: broken rows are set aside, not fatal."""
    width = len(header)
    columns: list[list[str]] = [[] for _ in header]
    numbers: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    with (
        _csv_fields_up_to(path),
        path.open("r", encoding="utf-8-sig", newline="", errors="surrogateescape") as handle,
    ):
        reader = csv.reader(handle)
        next(reader, None)
        number = -1
        try:
            for row in reader:
                if not row:  # a blank line: no row, as Arrow's reader skips it
                    continue
                number += 1
                if len(row) != width:
                    rejected.append((number, _json_text(row), REASON_CSV_FIELDS))
                    continue
                if any(_has_surrogates(v) for v in row):
                    rejected.append((number, _json_text(row), REASON_UTF8))
                    continue
                for values, value in zip(columns, row, strict=True):
                    values.append(value)
                numbers.append(number)
        except csv.Error as exc:
            raise BotfilterError(f"{path}: cannot read file: {_one_line(exc)}") from exc
    data = pa.table({n: pa.array(v, pa.string()) for n, v in zip(header, columns, strict=True)})
    return RawTable(schema.name, str(path), data, np.asarray(numbers, np.int64), None, rejected)


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_text(value: Any) -> str:
    """JSON for a quarantined record; undecodable bytes become U+FFFD."""
    text = json_text(value)
    return text.encode("utf-8", "replace").decode("utf-8")


# --------------------------------------------------------------------------- JSON Lines


_JSON_HEAD = 1 << 20  # bytes read first to learn the column types


def _read_jsonl(path: Path, schema: TableSchema) -> RawTable:
    if _blank_file(path):  # no records: as a CSV file of its header only, a table without rows
        return empty_raw(schema.name, str(path))

    if not _shallow(path):
        return _read_jsonl_rows(path, schema)
    try:
        # Arrow infers ISO text as timestamps, which would drop the original offset from the
        # records; declare such columns as text up front (types learnt from the file's head) so
        # that the file is parsed once, and re-read only if a later line brings another one.
        text_columns = _stamped(_json_head_schema(path))
        data = pj.read_json(path, parse_options=_json_options(text_columns))
        stamped = _stamped(data.schema)
        if stamped:
            data = pj.read_json(path, parse_options=_json_options(text_columns + stamped))
        data.validate(full=True)  # the JSON reader lets invalid UTF-8 through; kernels would not
    except pa.ArrowInvalid:
        return _read_jsonl_rows(path, schema)
    if data.num_columns == 0:  # no records: a valid empty table
        return empty_raw(schema.name, str(path))
    if any(_nested(data.schema.field(c).type) for c in schema.names if c in data.column_names):
        return _read_jsonl_rows(path, schema)
    if any(
        pa.types.is_boolean(data.schema.field(c).type)
        for c in schema.identifiers
        if c in data.column_names
    ):  # identifiers given as booleans: those lines are set aside (_read_jsonl_rows)
        return _read_jsonl_rows(path, schema)
    if any(
        pa.types.is_floating(data.schema.field(c.name).type)
        for c in schema.columns
        if c.kind == "str" and c.name in data.column_names
    ):  # Arrow reads integers past int64 as floats: ids that lose digits (read exactly here)
        return _read_jsonl_rows(path, schema)
    return RawTable(schema.name, str(path), data, lines=path)


# Opening brackets a line may hold for Arrow's JSON reader: it recurses once per level, and a
# line nested some 20,000 levels deep crashed the whole process (a segmentation fault).
_ARROW_JSON_OPENINGS = 1000


def _shallow(path: Path) -> bool:
    """Whether no line of the file opens more than :data:`_ARROW_JSON_OPENINGS` brackets
    (counted in strings too: a line that only looks deep is read line by line, as safely)."""
    carry = 0  # brackets opened since the last newline, in earlier blocks
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            raw = np.frombuffer(block, np.uint8)
            opened = np.cumsum((raw == ord("[")) | (raw == ord("{")), dtype=np.int64)
            ends = np.flatnonzero(raw == ord("\n"))
            if len(ends):
                at = opened[ends]
                per_line = np.diff(at, prepend=0)
                per_line[0] += carry
                if int(per_line.max()) > _ARROW_JSON_OPENINGS:
                    return False
                carry = int(opened[-1] - at[-1])
            else:
                carry += int(opened[-1])
            if carry > _ARROW_JSON_OPENINGS:
                return False
    return True


def _blank_file(path: Path) -> bool:
    """Whether the file holds nothing but whitespace (read in blocks: it may be large)."""
    with path.open("rb") as handle:
        while block := handle.read(1 << 16):
            if block.strip():
                return False
    return True


def _json_head_schema(path: Path) -> pa.Schema:
    """Column types Arrow infers from the complete lines of the first block of a file."""
    with path.open("rb") as handle:
        head = handle.read(_JSON_HEAD)
    head = head[: head.rfind(b"\n") + 1] if len(head) == _JSON_HEAD else head
    if not head.strip():
        return pa.schema([])
    return pj.read_json(pa.BufferReader(head)).schema


def _stamped(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_timestamp(f.type)]


def _json_options(text_columns: list[str]) -> Any:
    if not text_columns:
        return pj.ParseOptions()
    explicit = pa.schema([pa.field(name, pa.string()) for name in text_columns])
    return pj.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer")


def _nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t) or pa.types.is_dictionary(t)


def _read_jsonl_rows(path: Path, schema: TableSchema) -> RawTable:
    """Line-by-line JSON for files Arrow refuses (a broken line, a column mixing types), and for
    those with an identifier that is not text (the line is set aside: :func:`identifier_problem`)."""
    identifiers = schema.identifiers
    names: dict[str, None] = {}
    objects: list[dict[str, Any]] = []
    records: list[str] = []
    numbers: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    number = 0
    with path.open("rb") as handle:
        for line in handle:
            if number == 0 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]  # as Arrow's reader reads it
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8").strip()
            except UnicodeDecodeError:
                rejected.append((number, _json_text(line.decode("utf-8", "replace")), REASON_UTF8))
                number += 1
                continue
            try:
                obj = _json_line(text)
            except (ValueError, RecursionError):  # nested past the interpreter's limit
                rejected.append((number, json.dumps(text, ensure_ascii=False), REASON_JSON))
            else:
                if "\\u" in text and _lone_surrogates(obj):
                    # "\ud800" alone decodes to no character: not text, as bytes that are not
                    # UTF-8 are not (it failed the whole run further on)
                    rejected.append((number, text, REASON_UTF8))
                elif not isinstance(obj, dict):
                    rejected.append((number, text, REASON_JSON_OBJECT))
                elif (problem := identifier_problem(obj, identifiers)) is not None:
                    rejected.append((number, text, problem))
                    names.update(dict.fromkeys(obj))  # its columns are the file's all the same
                else:
                    names.update(dict.fromkeys(obj))
                    objects.append(obj)
                    records.append(text)
                    numbers.append(number)
            number += 1
    if not names:
        empty = empty_raw(schema.name, str(path))
        empty.rejected = rejected
        return empty
    data = pa.table({name: column_from_values([o.get(name) for o in objects]) for name in names})
    return RawTable(schema.name, str(path), data, np.asarray(numbers, np.int64), records, rejected)


def _json_line(text: str) -> Any:
    """One JSON Lines record, read as the API reads a body: orjson (1,024 levels, where the
    standard library stops near the interpreter's recursion limit), then the standard library
    for what orjson refuses (integers beyond 64 bits, NaN literals, lone surrogates)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _lone_surrogates(obj: Any) -> bool:
    """Does a parsed JSON value hold a string with a lone surrogate (a ``\\udXXX`` escape
    that makes no character)?"""
    try:
        json_text(obj).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def identifier_problem(record: dict[str, Any], names: Iterable[str]) -> str | None:
    """The reason a record (a decoded JSON object) is refused for an identifier among ``names``
    that is an object, an array or a boolean (the first such, in ``names`` order); None when
    every one can be an id."""
    for name in names:
        kind = id_problem(record.get(name))
        if kind is not None:
            return identifier_reason(name, kind)
    return None


def column_from_values(values: list[Any]) -> pa.Array:
    """An Arrow column from Python values; a column mixing types becomes text (ints as digits,
    booleans as true/false, nested values as JSON) so that validation can judge each value.

    Arrow would read booleans among floats as 1.0/0.0; such a column is text too, so that no
    value is judged differently because of its neighbours."""
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _text_column(values)
    if _nested(arr.type) or (pa.types.is_floating(arr.type) and _has_bool(values)):
        return _text_column(values)
    return arr


def _text_column(values: list[Any]) -> pa.Array:
    return pa.array([value_text(v) for v in values], pa.string())


def _has_bool(values: Any) -> bool:
    return any(v is True or v is False or isinstance(v, np.bool_) for v in values)


# --------------------------------------------------------------------------- pandas


def raw_from_pandas(
    name: str, frame: pd.DataFrame, judged: Iterable[str] | None = None
) -> RawTable:
    """A pandas frame as a raw table (row numbers are positions in the frame).

    ``judged`` names the columns validation parses (default: the table's schema columns); an
    object column there is typed as :func:`column_from_values` types it (nested values as their
    JSON text, as in a JSON Lines file). A row holding text that cannot be UTF-8 (a lone
    surrogate, which Python's JSON decoder lets through) is set aside as ``invalid UTF-8 text``;
    one whose identifier among ``judged`` is an object, an array or a boolean, as a JSON line
    is (:func:`identifier_problem`).
    """
    labels = [str(c) for c in frame.columns]
    if len(set(labels)) != len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise BotfilterError(f"{name}: column {twice} appears twice")
    if judged is None:
        judged = TABLES[name].names if name in TABLES else ()
    judged = list(judged)
    ids = [label for label in judged if label in _IDENTIFIERS and label in labels]
    refused = _refused_identifiers(frame, labels, ids)
    if refused is None:
        try:
            return RawTable(name, name, _arrow_table(frame, labels, set(judged)))
        except UnicodeEncodeError:
            pass
    return _set_aside(name, frame, set(judged), refused)


# Every identifier column of every table.
_IDENTIFIERS = frozenset(c.name for t in TABLES.values() for c in t.columns if is_identifier(c))
# pandas' inferred types of an object column that hold no object, array or boolean
_ID_SAFE_TYPES = frozenset(
    {"string", "empty", "integer", "floating", "mixed-integer-float", "decimal"}
)


def _refused_identifiers(
    frame: pd.DataFrame, labels: list[str], ids: list[str]
) -> np.ndarray | None:
    """Per row of ``frame``, the reason it is refused for an identifier among ``ids`` that is an
    object, an array or a boolean (the first such, in ``ids`` order; None where none is); None
    when no row is. Columns of text or numbers cost one pass of pandas' type inference."""
    import pandas as pd

    reasons: np.ndarray | None = None
    for label in ids:
        series = frame[frame.columns[labels.index(label)]]
        kinds: np.ndarray
        if pd.api.types.is_bool_dtype(series.dtype):
            kinds = np.full(len(series), None, dtype=object)
            kinds[series.notna().to_numpy()] = "a boolean"
        elif series.dtype == object and (
            pd.api.types.infer_dtype(series, skipna=True) not in _ID_SAFE_TYPES
        ):
            kinds = np.array([id_problem(v) for v in series.tolist()], dtype=object)
        else:
            continue
        hit = kinds != None  # noqa: E711 (element-wise)
        if not hit.any():
            continue
        if reasons is None:
            reasons = np.full(len(frame), None, dtype=object)
        hit &= reasons == None  # noqa: E711
        reasons[hit] = [identifier_reason(label, kind) for kind in kinds[hit]]
    return reasons


def _arrow_table(frame: pd.DataFrame, labels: list[str], judged: set[str]) -> pa.Table:
    try:  # one conversion for the whole frame: most frames have one type per column
        data = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        data = None
    if data is not None:
        columns = zip(labels, data.schema, frame.columns, strict=True)
        if not any(
            label in judged and _retype(field_.type, frame[column])
            for label, field_, column in columns
        ):
            return data.rename_columns(labels)
    arrays: dict[str, pa.Array] = {}
    for label, column in zip(labels, frame.columns, strict=True):
        series = frame[column]
        if label in judged and series.dtype == object:
            arrays[label] = column_from_values(series.tolist())
            continue
        try:
            arrays[label] = pa.Array.from_pandas(series)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[label] = column_from_values(series.tolist())
    return pa.table(arrays) if arrays else pa.table({})


def _retype(arrow_type: pa.DataType, series: pd.Series) -> bool:
    """Whether Arrow's type for a judged column is not what :func:`column_from_values` gives."""
    if _nested(arrow_type):
        return True
    return pa.types.is_floating(arrow_type) and series.dtype == object and _has_bool(series)


def _set_aside(
    name: str, frame: pd.DataFrame, judged: set[str], refused: np.ndarray | None
) -> RawTable:
    """Move the rows holding text that is not valid Unicode, then those ``refused`` names a
    reason for (:func:`_refused_identifiers`), to ``rejected``."""
    bad = np.zeros(len(frame), dtype=bool)
    for column in frame.columns:
        series = frame[column]
        if series.dtype == object:
            bad |= np.fromiter(map(unencodable, series), dtype=bool, count=len(series))
    why = np.full(len(frame), REASON_UTF8, dtype=object)
    if refused is not None:
        other = ~bad & (refused != None)  # noqa: E711 (element-wise)
        why[other] = refused[other]
        bad |= other
    keep = np.flatnonzero(~bad)
    labels = [str(c) for c in frame.columns]
    data = _arrow_table(frame.iloc[keep], labels, judged)
    rows = [
        dict(zip(labels, row, strict=True))
        for row in frame.iloc[np.flatnonzero(bad)].itertuples(index=False)
    ]
    rejected = [
        (int(p), _json_text(row), str(why[p]))
        for p, row in zip(np.flatnonzero(bad), rows, strict=True)
    ]
    return RawTable(name, name, data, keep, None, rejected)


def unencodable(value: Any) -> bool:
    """Whether a value holds text that is not valid Unicode (a lone surrogate), which cannot
    be UTF-8."""
    if isinstance(value, str):
        return not value.isascii() and _has_surrogates(value)
    if isinstance(value, list | dict):
        return _has_surrogates(value_text(value) or "")
    return False


def empty_raw(name: str, source: str | None = None) -> RawTable:
    """A table without rows that has every schema column (an absent optional table)."""
    schema = TABLES[name]
    data = pa.table({c: pa.array([], pa.string()) for c in schema.names})
    return RawTable(name, source or name, data)


def records_json(raw: RawTable, positions: np.ndarray) -> list[str]:
    """The original rows at ``positions`` of ``raw.data`` as JSON objects (one string each)."""
    if len(positions) == 0:
        return []
    if raw.records is not None:
        return [raw.records[i] for i in positions]
    if raw.lines is not None:
        return _original_lines(raw.lines, positions)
    table = raw.data.take(pa.array(positions))
    for i, column in enumerate(table.columns):
        if pa.types.is_timestamp(column.type):  # ISO text, vectorised (to_json loops in Python)
            zone = "%z" if column.type.tz else ""
            text = pc.strftime(column, format=f"%Y-%m-%dT%H:%M:%S{zone}", locale="C")
            table = table.set_column(i, table.field(i).name, text)
    # Without the schema's pandas metadata: pandas would follow the types it names, which a
    # file rewritten by other tools may no longer hold (an Int64 column now text).
    rows = table.replace_schema_metadata(None).to_pandas(types_mapper=_record_types().get)
    text = rows.to_json(orient="records", lines=True, force_ascii=False, default_handler=str)
    # the encoder escapes newlines inside values, and every "/" as "\/" (valid but noisy)
    return text.replace("\\/", "/").split("\n")[: len(positions)]


def _original_lines(path: Path, positions: np.ndarray) -> list[str]:
    """The text of the given records (non-blank lines, counted from 0) of a JSON Lines file."""
    wanted = {int(p): "" for p in positions}
    last = max(wanted)
    number = 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            if number in wanted:
                wanted[number] = line.decode("utf-8", "replace").strip()
            if number == last:
                break
            number += 1
    return [wanted[int(p)] for p in positions]


def _record_types() -> dict[pa.DataType, Any]:
    """pandas dtypes that keep a quarantined record's integers and booleans as written."""
    import pandas as pd

    return {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame; extra columns mixing types (kept as read) are written as text."""
    import pyarrow.parquet as pq  # on use, as in _read_parquet

    arrays = {}
    for name in frame.columns:
        series = frame[name]
        try:
            arrays[str(name)] = pa.Array.from_pandas(series)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[str(name)] = pa.array([value_text(v) for v in series.tolist()], pa.string())
    table = pa.table(arrays) if arrays else pa.table({})
    pq.write_table(table, path)
