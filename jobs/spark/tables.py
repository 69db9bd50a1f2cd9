"""Reading a data directory into Spark and validating it with the contract's own code.

Local Parquet grouped by tenant (exports, the simulator) is validated by tasks that each read
whole tenants from their own row groups, as ``botfilter validate`` does, and write the clean
rows as Parquet that Spark then reads (:func:`_load_by_parts`). Anything else is grouped by key:

Validation is distributed, and exact: every rule of :mod:`contract.validate` needs either one row,
or the rows sharing one key. The rows are shuffled so that each group handed to
:func:`contract.validate.validate_raw` holds every row its rules look at:

- ``messages`` and ``events`` together, by ``message_id``: each bucket holds every raw row of its
  message ids (row rules, conflicting/identical duplicates of one id) and every event naming them
  (row rules, and the rules against the message: unknown / quarantined message, tenant mismatch,
  open on SMS, before sent, link range), so one Python pass validates both tables. Duplicate
  deliveries look at the rows of one ``event_id``; they meet in that bucket as long as they name
  one message. The event ids whose rows name several messages (or some none), found first by
  one job over three columns, are validated apart, grouped by ``event_id``, each group with every
  raw ``messages`` row of the message ids it names;
- ``segments`` and ``settings`` by ``tenant_id`` (their duplicate keys contain the tenant).

Keys are normalised with the contract's own text parser before hashing (``" m1"`` and ``"m1"`` are
the same message), groups are sorted by source row number so "first occurrence" means the same
row, and quarantine row numbers are the source rows: ``_metadata.row_index`` for Parquet (offset by
the rows of the preceding part files, in path order), the reader's own numbers for CSV/JSON Lines.

Parquet (local or any Hadoop-compatible path: ``s3a://``, ``abfss://``, ``gs://``, ``hdfs://``) is
read by Spark. CSV and JSON Lines are read on the driver with :mod:`contract.readers` (they are local
files by definition here) and handed to the same distributed validation.

Clean tables keep the schema columns; timestamps travel as int64 nanoseconds since the epoch
(UTC), so nothing is rounded to Spark's microseconds.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.core.broadcast import Broadcast
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import IntegralType, StringType, StructField, StructType

from contract.columns import UnsupportedType, parse_text
from contract.counts import Report, TableReport
from contract.parts import PART_EVENTS, Span, TenantParts
from contract.readers import (
    RawTable,
    check_required_columns,
    empty_raw,
    find_table_files,
    read_table_file,
)
from contract.schema import FILE_FORMATS, REQUIRED_TABLES, TABLES
from contract.validate import (
    REASON_TENANT_MISMATCH,
    REASON_UNKNOWN_MESSAGE,
    ValidatedArrow,
    validate_raw,
    validate_raw_arrow,
)
from core.errors import BotfilterError
from core.paths import as_uri_or_path, local_path

ROW = "_row"  # 0-based source record number
RECORD = "_record"  # original record text, when the driver-side reader had to go row by row
BUCKET = "_bucket"
BUCKETS_PER_PARTITION = 4  # groups handed to Python per shuffle partition (memory per call)
KEY_EVENT, KEY_MESSAGE, KEY_TENANT = "_key_event", "_key_message", "_key_tenant"
QUARANTINE = ("_table", "_q_row", "_q_record", "_q_reason")
NAMED = "_named"  # a clean message that a clean event of its validation group names
# Rows (all tables) from which data that only one task could read whole tenants from is
# grouped by key instead, so that every core works.
SERIAL_ROWS = 1_000_000
_INTERNAL = (ROW, RECORD, BUCKET, KEY_EVENT, KEY_MESSAGE, KEY_TENANT)
#: Arrow types of clean columns inside Spark (timestamps as ns since the epoch, UTC).
_CLEAN_ARROW = {
    "str": pa.string(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "float": pa.float64(),
    "timestamp": pa.int64(),
}
_SPARK_TYPE = {"str": "string", "int": "bigint", "bool": "boolean", "float": "double"}
_ARROW_OF_SPARK = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "double": pa.float64(),
}
UTC_NS = pa.timestamp("ns", tz="UTC")


@dataclass
class SparkTables:
    """Clean tables of one data directory as Spark DataFrames, the quarantine and the counts."""

    messages: DataFrame
    events: DataFrame
    segments: DataFrame
    settings: DataFrame
    quarantine: DataFrame  # table, row_number, record, reason
    report: Report | None  # None: the tables came validated (engine.spark_frames)
    cached: list[DataFrame] = field(default_factory=list)  # what the tables are views of
    # The clean messages that a clean event names, the only ones scoring needs (None: unknown,
    # take every message); most messages have no event.
    named_messages: DataFrame | None = None
    scratch: Path | None = None  # the clean tables' files, when tasks wrote them

    def unpersist(self) -> None:
        """Release the cached validation results (and remove the clean tables' files)."""
        for frame in self.cached:
            frame.unpersist()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


# --------------------------------------------------------------------------- schemas


def clean_ddl(table: str) -> str:
    """Spark DDL of a clean table (timestamps as ``bigint`` nanoseconds)."""
    return ", ".join(
        f"`{c.name}` {_SPARK_TYPE.get(c.kind, 'bigint')}" for c in TABLES[table].columns
    )


def timestamp_columns(table: str) -> list[str]:
    """Schema columns of ``table`` that hold timestamps."""
    return [c.name for c in TABLES[table].columns if c.kind == "timestamp"]


def _wide_columns(*tables: str) -> dict[str, str]:
    """Clean columns of one or more tables (a shared name has one type): the output of a
    validation UDF, which may hold rows of several tables."""
    out: dict[str, str] = {}
    for table in tables:
        for column in TABLES[table].columns:
            out.setdefault(column.name, _SPARK_TYPE.get(column.kind, "bigint"))
    return out


def _validated_columns(*tables: str) -> dict[str, str]:
    """Columns of a validation UDF's output and their Spark types: the tables' clean columns,
    then ``_table`` (every row), the quarantine columns (quarantined rows only) and
    :data:`NAMED` (clean messages)."""
    return {
        **_wide_columns(*tables),
        **dict(zip(QUARANTINE, ("string", "bigint", "string", "string"), strict=True)),
        NAMED: "boolean",
    }


def _validated_ddl(*tables: str) -> str:
    """Schema of a validation UDF's output (:func:`_validated_columns`) as Spark DDL."""
    return ", ".join(f"`{name}` {kind}" for name, kind in _validated_columns(*tables).items())


def arrow_to_clean_pandas(
    table: str, data: pa.Table, columns: list[str] | None = None
) -> pd.DataFrame:
    """A clean Spark batch back to the contract's pandas dtypes (Int64, boolean, UTC ns)."""
    kinds = {c.name: c.kind for c in TABLES[table].columns}
    arrays = {}
    for name in columns or data.column_names:
        arr = data.column(name)
        if kinds.get(name) == "timestamp":
            arr = arr.cast(UTC_NS)
        arrays[name] = arr
    mapper = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
    return pa.table(arrays).to_pandas(types_mapper=mapper)  # text: object arrays of str/None


def _spark_types(table: str, columns: dict[str, Any]) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The schema columns of a clean table (Arrow arrays, or pandas columns in the contract's
    dtypes) as Arrow arrays of the Spark-side types (chunked ones stay chunked)."""
    out = {}
    for column in TABLES[table].columns:
        values = columns[column.name]
        if isinstance(values, pa.Array | pa.ChunkedArray):
            arr = values
        else:
            arr = pa.Array.from_pandas(values)
        if column.kind == "timestamp":
            arr = arr.cast(UTC_NS)
        out[column.name] = arr.cast(_CLEAN_ARROW[column.kind])
    return out


def clean_to_arrow(table: str, frame: pd.DataFrame) -> pa.Table:
    """A contract-clean pandas table as the Arrow table of its Spark-side clean schema."""
    return pa.table(_spark_types(table, {name: frame[name] for name in TABLES[table].names}))


def _output(
    table: str,
    clean: pa.Table,
    quarantine: pd.DataFrame,
    wide: tuple[str, ...],
    named: pa.Array | None = None,
) -> pa.Table:
    """Clean rows then quarantine rows of one validated group, in the schema of a validation
    UDF over the tables ``wide`` (columns of the other tables are null); ``named``: per clean
    row, whether a clean event of the group names it (messages).

    The two parts are chunks of one table, so the clean columns are not copied (concatenating
    them with the quarantine's nulls was a quarter of a group's Python time)."""
    n, q = clean.num_rows, len(quarantine)
    columns = _spark_types(table, {name: clean.column(name) for name in clean.column_names})
    schema = pa.schema(
        [(name, _ARROW_OF_SPARK[kind]) for name, kind in _validated_columns(*wide).items()]
    )

    def part(rows: int, given: dict[str, Any]) -> pa.Table:
        arrays = [
            pa.nulls(rows, f.type) if given.get(f.name) is None else given[f.name] for f in schema
        ]
        return pa.Table.from_arrays(arrays, schema=schema)

    tag = pa.repeat(pa.scalar(table, pa.string()), n)
    kept = part(n, {**columns, "_table": tag, NAMED: named})
    refused = {
        "_table": pa.repeat(pa.scalar(table, pa.string()), q),
        "_q_row": pa.array(quarantine["row_number"].to_numpy(dtype=np.int64), pa.int64()),
        "_q_record": pa.array(quarantine["record"].tolist(), pa.string()),
        "_q_reason": pa.array(quarantine["reason"].tolist(), pa.string()),
    }
    return pa.concat_tables([kept, part(q, refused)])


def _named_messages(messages: pa.Table, events: pa.Table) -> pa.Array:
    """Per clean message: does a clean event of the same group name it (tenant and message id)."""
    keys = ["tenant_id", "message_id"]
    rows = messages.select(keys).append_column("_at", pa.array(np.arange(messages.num_rows)))
    found = rows.join(events.select(keys), keys, join_type="left semi", use_threads=False)
    named = np.zeros(messages.num_rows, dtype=bool)
    named[found.column("_at").to_numpy()] = True
    return pa.array(named)


def _outputs(result: ValidatedArrow, tables: tuple[str, ...]) -> pa.Table:
    """The clean and quarantined rows of ``tables`` from one validated group."""
    q = result.quarantine
    named = None
    if "messages" in tables and "events" in tables:
        named = _named_messages(result.tables["messages"], result.tables["events"])
    return pa.concat_tables(
        [
            _output(
                name,
                result.tables[name],
                q.loc[q["table"] == name],
                tables,
                named if name == "messages" else None,
            )
            for name in tables
        ]
    )


# --------------------------------------------------------------------------- raw groups


def _raw(table: str, source: str, data: pa.Table, units: Units) -> RawTable:
    """A :class:`contract.readers.RawTable` from one Spark group, in source row order."""
    rows = np.asarray(data.column(ROW).to_numpy(), dtype=np.int64)
    records = data.column(RECORD).to_pylist() if RECORD in data.column_names else None
    data = data.select([c for c in data.column_names if c not in _INTERNAL])
    if len(rows) > 1 and not bool((rows[1:] > rows[:-1]).all()):  # often in order already
        order = np.argsort(rows, kind="stable")
        data, rows = data.take(order), rows[order]
        records = [records[i] for i in order] if records is not None else None
    for name, unit, utc in units:  # the stored Parquet type (Spark has micros, or int64 nanos)
        if name in data.column_names:
            i = data.column_names.index(name)
            stored = pa.timestamp(unit, tz="UTC" if utc else None)
            column = data.column(i)
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.timestamp(column.type.unit, tz=stored.tz))
            data = data.set_column(i, name, column.cast(stored, safe=False))
    return RawTable(table, source, data, rows, records)


def _validate_one(table: str, source: str, units: Units):  # noqa: ANN202
    """UDF: validate one group of a table that needs no other table."""

    def run(data: pa.Table) -> pa.Table:
        raws = {name: empty_raw(name) for name in REQUIRED_TABLES}
        raws[table] = _raw(table, source, data, units)
        return _outputs(validate_raw_arrow(raws), (table,))

    return run


def _validate_pair(sources: dict[str, str], units: dict[str, Units], tables: tuple[str, ...]):  # noqa: ANN202
    """UDF: validate one group of events with every raw row of the messages they name; returns
    the rows of ``tables`` (both, when the group holds every row of its message ids too)."""

    def run(messages: pa.Table, events: pa.Table) -> pa.Table:
        raws = {
            "messages": _raw("messages", sources["messages"], messages, units["messages"]),
            "events": _raw("events", sources["events"], events, units["events"]),
        }
        return _outputs(validate_raw_arrow(raws), tables)

    return run


def _add_keys(columns: dict[str, str]):  # noqa: ANN202
    """mapInArrow: normalised key columns (the contract's text parsing) for hashing."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            arrays = list(batch.columns)
            names = list(batch.schema.names)
            for key, source in columns.items():
                try:
                    values = parse_text(batch.column(source)).values
                except UnsupportedType:  # validation reports the column; any bucket will do
                    values = pa.nulls(batch.num_rows, pa.string())
                arrays.append(values.cast(pa.string()))
                names.append(key)
            yield pa.RecordBatch.from_arrays(arrays, names=names)

    return run


#: Characters trimmed from both ends of a key in Spark: a superset of what the contract's
#: ``utf8_trim_whitespace`` trims (every control and Unicode space character). Two raw values the
#: contract reads as the same key then get the same Spark key, so they meet in one group; values it
#: reads as different keys may meet too, which is harmless (a group may hold extra rows).
_TRIM = (
    "[\\x{0000}-\\x{0020}\\x{007F}-\\x{00A0}\\p{Z}\\x{1680}\\x{180E}\\x{200B}-\\x{200F}"
    "\\x{2028}-\\x{202F}\\x{205F}-\\x{2064}\\x{3000}\\x{FEFF}]"
)


def _native_keys(frames: list[tuple[DataFrame, str]]) -> bool:
    """Whether these key columns can be keyed in the JVM: text, or integers (their digits, as
    the contract's ``as_text`` writes them)."""
    return all(
        isinstance(frame.schema[column].dataType, StringType | IntegralType)
        for frame, column in frames
    )


def _native_key(column: str) -> Column:
    """The key of a column in Spark SQL: its text with :data:`_TRIM` characters cut from the ends
    (no Python round trip). The regular expression runs only on values that may start or end with
    one of them (few): a match tried at every position of every id is costly. The test is a
    cheap superset: the first character's code point is a control, in U+007F-U+00A0 or at least
    U+1680 (where every other one lies), or the last byte is a control, DEL or a UTF-8
    continuation byte (the last byte of any multibyte character). Character-based ``substring``
    at the end had to count every character of every id first (twice the cost of this)."""
    text = F.col(column).cast("string")
    first = F.ascii(text)
    last = F.hex(F.substring(text.cast("binary"), -1, 1))  # two upper-case hex digits
    may_trim = (
        (first <= 0x20)
        | first.between(0x7F, 0xA0)
        | (first >= 0x1680)
        | (last <= F.lit("20"))
        | (last >= F.lit("7F"))
    )
    trimmed = F.regexp_replace(text, f"^{_TRIM}+|{_TRIM}+$", "")
    return F.when(may_trim, trimmed).otherwise(text)


# --------------------------------------------------------------------------- reading


def _is_local(path: str) -> bool:
    """A plain path (read like the local engine does); any URI, ``file://`` too, goes through
    Hadoop's file systems and must be Parquet."""
    return "://" not in path


def _jvm(spark: SparkSession) -> Any:
    """The driver's JVM gateway (py4j: untyped), None only once the session has stopped."""
    jvm = spark.sparkContext._jvm
    if jvm is None:
        raise BotfilterError("the Spark session has stopped")
    return jvm


def _hadoop_exists(spark: SparkSession, path: str) -> bool:
    jvm = _jvm(spark)
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.exists(hpath))


def find_tables(spark: SparkSession, data_path: str) -> dict[str, str]:
    """The file (or Parquet directory) of each table under ``data_path``."""
    if _is_local(data_path):
        return {name: str(p) for name, p in find_table_files(Path(data_path)).items()}
    base = data_path.rstrip("/")
    found: dict[str, str] = {}
    for name in TABLES:
        path = f"{base}/{name}.parquet"
        if _hadoop_exists(spark, path):
            found[name] = path
        elif name in REQUIRED_TABLES:
            others = [f"{base}/{name}{ext}" for ext in FILE_FORMATS[1:]]
            if any(_hadoop_exists(spark, p) for p in others):
                raise BotfilterError(
                    f"{base}: table {name} is not Parquet; remote data must be NAME.parquet"
                )
            raise BotfilterError(f"{base}: no {name} table (expected {name}.parquet)")
    return found


Units = tuple[tuple[str, str, bool], ...]  # Parquet timestamps: (column, unit, UTC-adjusted)
Rejected = dict[str, list[tuple[int, str, str]]]  # per table: rows its reader could not split
_UNITS = {"MILLIS": "ms", "MICROS": "us", "NANOS": "ns"}


def _timestamp_units(spark: SparkSession, frame: DataFrame) -> Units:
    """The stored unit of each top-level Parquet timestamp column (from the first file's footer).

    Spark reads them as microseconds (NANOS as int64, see ``nanosAsLong``); putting back the
    stored type makes every value, and the quarantine's record text, what the local reader sees.
    """
    files = sorted(frame.inputFiles())
    if not files:
        return ()
    jvm = _jvm(spark)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hfile = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(
        jvm.org.apache.hadoop.fs.Path(files[0]), conf
    )
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(hfile)
    try:
        schema = reader.getFooter().getFileMetaData().getSchema()
    finally:
        reader.close()
    units = []
    for column in schema.getFields():
        logical = column.getLogicalTypeAnnotation() if column.isPrimitive() else None
        found = re.match(r"TIMESTAMP\((\w+),(\w+)\)", str(logical.toString())) if logical else None
        if found and found.group(1) in _UNITS:
            units.append((str(column.getName()), _UNITS[found.group(1)], found.group(2) == "true"))
    return tuple(units)


def _read_parquet(spark: SparkSession, path: str, table: str) -> DataFrame:
    """A Parquet table (file or directory of parts) with its source row numbers."""
    try:
        frame = spark.read.parquet(path)
    except Exception as exc:  # Spark's AnalysisException: unreadable, not Parquet, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BotfilterError(f"{path}: cannot read file: {first}") from exc
    check_required_columns(frame.columns, TABLES[table], path)
    files = sorted(frame.inputFiles())
    meta = frame.select(
        "*",
        F.col("_metadata.file_path").alias("_file"),
        F.col("_metadata.row_index").alias("_index"),
    )
    if len(files) <= 1:
        rows = meta.withColumn(ROW, F.col("_index"))
    else:
        counts: dict[str, int] = dict(meta.groupBy("_file").count().collect())
        offsets, start = [], 0
        for file in sorted(counts):
            offsets.append((file, start))
            start += counts[file]
        offset = spark.createDataFrame(offsets, "_file string, _offset bigint")
        rows = (
            meta.join(F.broadcast(offset), "_file")
            .withColumn(ROW, F.col("_offset") + F.col("_index"))
            .drop("_offset")
        )
    return rows.drop("_file", "_index")


def _read_local_text(
    spark: SparkSession, path: str, table: str
) -> tuple[DataFrame, list[tuple[int, str, str]]]:
    """CSV / JSON Lines read on the driver by the contract's reader, then parallelised."""
    raw = read_table_file(Path(path), table)
    data = raw.data.append_column(ROW, pa.array(raw.row_number_array(), pa.int64()))
    if raw.records is not None:
        data = data.append_column(RECORD, pa.array(raw.records, pa.string()))
    return spark.createDataFrame(data), raw.rejected


def _check_types(frame: DataFrame, table: str, source: str, units: Units) -> None:
    """Fail like the local engine does for a column whose type cannot hold its kind."""
    empty = to_arrow_schema(frame.schema, timezone="UTC").empty_table()
    _check_columns(_raw(table, source, empty, units))


def _check_columns(empty: RawTable) -> None:
    """Validate a table without rows: a column whose type cannot hold its kind fails, on the
    driver, with the local engine's one line."""
    raws = {name: empty_raw(name) for name in REQUIRED_TABLES}
    raws[empty.name] = empty
    validate_raw(raws)


def load_tables(
    spark: SparkSession,
    data_path: str | Path,
    buckets: int | None = None,
    by_parts: bool | None = None,
    part_events: int = PART_EVENTS,
) -> SparkTables:
    """Read and validate a data directory with Spark (see the module docstring).

    ``by_parts``: None has tasks read whole tenants where the files allow it (local Parquet
    grouped by tenant, :func:`_load_by_parts`), True requires it, False (or ``buckets``)
    groups rows by key. ``part_events``: events per part the tasks validate at a time."""
    data_path = as_uri_or_path(data_path)
    if by_parts is not False and buckets is None:
        loaded = _load_by_parts(spark, data_path, part_events)
        if loaded is not None:
            return loaded
    if by_parts:
        raise ValueError(f"{data_path}: not local Parquet grouped by tenant")
    files = find_tables(spark, data_path)
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions") or 200)
    labels = _bucket_labels(spark, partitions, buckets)
    raw: dict[str, DataFrame] = {}
    rejected: dict[str, list[tuple[int, str, str]]] = {}
    units: dict[str, Units] = {}
    for name, path in files.items():
        if path.lower().endswith(".parquet"):
            raw[name] = _read_parquet(spark, path, name)
            rejected[name] = []
        else:
            raw[name], rejected[name] = _read_local_text(spark, path, name)
        units[name] = (
            _timestamp_units(spark, raw[name]) if path.lower().endswith(".parquet") else ()
        )
        _check_types(raw[name], name, path, units[name])

    # Keys computed in the JVM when every column that is matched across tables allows it (the
    # events find their messages by this key: both sides must be keyed the same way).
    native = _native_keys(
        [
            (raw["messages"], "message_id"),
            (raw["events"], "event_id"),
            (raw["events"], "message_id"),
        ]
    )

    def keyed(name: str, keys: dict[str, str]) -> DataFrame:
        frame = raw[name]
        if (native or name in ("segments", "settings")) and _native_keys(
            [(frame, source) for source in keys.values()]
        ):
            return frame.select("*", *(_native_key(src).alias(key) for key, src in keys.items()))
        added = [StructField(key, StringType()) for key in keys]
        return frame.mapInArrow(_add_keys(keys), StructType([*frame.schema.fields, *added]))

    def bucket(frame: DataFrame, key: str) -> DataFrame:
        spread = F.pmod(F.xxhash64(key), F.lit(len(labels)))
        # bigint ids, as hashed when they were picked
        ids = F.array(*(F.lit(label).cast("bigint") for label in labels))
        return frame.withColumn(BUCKET, F.element_at(ids, (spread + 1).cast("int")))

    sources = {"messages": files["messages"], "events": files["events"]}
    pair_units = {"messages": units["messages"], "events": units["events"]}
    messages = keyed("messages", {KEY_MESSAGE: "message_id"})
    events = keyed("events", {KEY_EVENT: "event_id", KEY_MESSAGE: "message_id"})
    # One Python pass validates both tables: events go to the bucket of the message they name,
    # which holds every raw row of that message id. The few event keys whose rows fall in more
    # than one bucket ("split") are validated apart, by event key, with their messages.
    events = bucket(events, KEY_MESSAGE)
    split = _split_event_keys(spark, events)
    whole = events if split is None else events.join(split, _split_match(), "left_anti")
    pair = (
        bucket(messages, KEY_MESSAGE)
        .groupBy(BUCKET)
        .cogroup(whole.groupBy(BUCKET))
        .applyInArrow(
            _validate_pair(sources, pair_units, ("messages", "events")),
            _validated_ddl("messages", "events"),
        )
    )
    parts: dict[str, DataFrame] = {"pair": pair}
    holders: dict[str, list[str]] = {"messages": ["pair"], "events": ["pair"]}
    if split is not None:
        apart = bucket(events.drop(BUCKET).join(split, _split_match(), "left_semi"), KEY_EVENT)
        # Fresh column names: the events' bucket ids must not look like a self-join to Spark.
        wanted = (
            apart.where(F.col(KEY_MESSAGE).isNotNull())
            .select(F.col(BUCKET).alias("_to"), F.col(KEY_MESSAGE).alias("_wanted"))
            .distinct()
        )
        their_messages = (
            messages.join(wanted, F.col(KEY_MESSAGE) == F.col("_wanted"))
            .drop("_wanted")
            .withColumnRenamed("_to", BUCKET)
        )
        parts["apart"] = (
            their_messages.groupBy(BUCKET)
            .cogroup(apart.groupBy(BUCKET))
            .applyInArrow(
                _validate_pair(sources, pair_units, ("events",)), _validated_ddl("events")
            )
        )
        holders["events"].append("apart")
    for name in ("segments", "settings"):
        if name in raw:
            frame = bucket(keyed(name, {KEY_TENANT: "tenant_id"}), KEY_TENANT)
            parts[name] = frame.groupBy(BUCKET).applyInArrow(
                _validate_one(name, files[name], units[name]), _validated_ddl(name)
            )
            holders[name] = [name]

    # The validated parts are cached: clean and quarantine rows of every group.
    validated = {key: part.persist(StorageLevel.MEMORY_AND_DISK) for key, part in parts.items()}
    clean: dict[str, DataFrame] = {}
    for name in TABLES:
        if name in holders:
            frames = [
                validated[key]
                .where((F.col("_table") == name) & F.col("_q_reason").isNull())
                .select(*TABLES[name].names)
                for key in holders[name]
            ]
            clean[name] = frames[0]
            for frame in frames[1:]:
                clean[name] = clean[name].unionByName(frame)
        else:
            clean[name] = spark.createDataFrame([], clean_ddl(name))
    # Without split event keys, every clean event was validated beside its messages, so a group
    # knows which of its clean messages one names; a split event's message may lie elsewhere.
    named = None
    if split is None:
        named = (
            validated["pair"]
            .where((F.col("_table") == "messages") & F.col("_q_reason").isNull() & F.col(NAMED))
            .select(*TABLES["messages"].names)
        )
    quarantines = [
        frame.where(F.col("_q_reason").isNotNull()).select(
            F.col("_table").alias("table"),
            F.col("_q_row").alias("row_number"),
            F.col("_q_record").alias("record"),
            F.col("_q_reason").alias("reason"),
        )
        for frame in validated.values()
    ]
    quarantine = _union(spark, quarantines)
    extra = [(t, r[0], r[1], r[2]) for t, rows in rejected.items() for r in rows]
    if extra:
        quarantine = quarantine.unionByName(
            spark.createDataFrame(
                extra, "table string, row_number bigint, record string, reason string"
            )
        )
    counts = _counts(raw, list(validated.values()))  # its first job fills the cache
    return _tables(clean, quarantine, (files, set(raw), counts, rejected), validated, named)


def _tables(
    clean: dict[str, DataFrame],
    quarantine: DataFrame,
    read: tuple[dict[str, str], set[str], dict[str, dict[str | None, int]], Rejected],
    cached: dict[str, DataFrame],
    named: DataFrame | None,
    scratch: Path | None = None,
) -> SparkTables:
    """The validated tables and their report; ``read``: each table's source, the tables read,
    their counts and the rows their readers could not split."""
    files, present, counts, rejected = read
    reports = {
        name: _table_report(
            name,
            files.get(name, name),
            counts.get(name, {}) if name in present else None,
            rejected.get(name, []),
        )
        for name in TABLES
    }
    return SparkTables(
        messages=clean["messages"],
        events=clean["events"],
        segments=clean["segments"],
        settings=clean["settings"],
        quarantine=quarantine,
        report=Report(reports),
        cached=list(cached.values()),
        named_messages=named,
        scratch=scratch,
    )


def _load_by_parts(
    spark: SparkSession, data_path: str, part_events: int = PART_EVENTS
) -> SparkTables | None:
    """Validation in tasks that each read whole tenants from the files, as ``botfilter
    validate`` does (:class:`contract.parts.TenantParts`), when every table is a local Parquet
    file grouped by tenant; None otherwise (the caller groups rows by key instead).

    Each task reads the row groups holding its parts' rows (:meth:`TenantParts.spans`),
    validates each part with the contract and writes its clean rows as Parquet to a scratch
    directory beside the data's reach (the same machine, or a mount every executor shares, as
    the data itself); Spark then reads them as it reads any table. Only the quarantine and the
    counts go from Python to the JVM: handing it every clean row as Arrow and caching them cost
    twice the validation itself (a JVM row per wide row). An event naming a message that only
    another tenant keeps is relabelled afterwards, as the local engine's parts are
    (:meth:`TenantParts.settle`)."""
    local = local_path(data_path)
    if local is None or not local.is_dir():
        return None
    try:
        plan = TenantParts(local, part_events, contract_only=True)
    except BotfilterError:  # a directory of Parquet parts, or what the other design reports
        return None
    readers = max(1, spark.sparkContext.defaultParallelism)
    spans = plan.spans(readers)
    rows = sum(source.num_rows for source in plan.sources.values())
    if spans is None or (len(spans) < readers and rows > SERIAL_ROWS):
        return None  # not Parquet, or fewer readers than cores on data worth spreading
    files = {name: str(path) for name, path in plan.files.items()}
    sources = plan.sources
    for name, source in sources.items():
        _check_columns(RawTable(name, files[name], source.schema.empty_table()))
    tables = tuple(name for name in TABLES if name in sources)
    scratch = Path(tempfile.mkdtemp(prefix="botfilter-validated-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    shared = spark.sparkContext.broadcast(spans)
    try:
        results = (
            spark.range(len(spans), numPartitions=len(spans))
            .mapInArrow(_validate_spans(shared, tables, str(scratch)), _SPAN_RESULT_DDL)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        counts = _span_counts(results, {name: source.num_rows for name, source in sources.items()})
    finally:
        shared.unpersist()
    reason = F.col("_q_reason")
    quarantined = F.col("_kept").isNull() & reason.isNotNull()  # not the count rows
    if counts.get("events", {}).get(REASON_UNKNOWN_MESSAGE):
        unknown = quarantined & (F.col("_table") == "events") & (reason == REASON_UNKNOWN_MESSAGE)
        # counted here from the cached results, without a distinct's or a count's shuffle
        by_id = Counter(row[0] for row in results.where(unknown).select("message_id").collect())
        elsewhere = sorted(plan.kept_elsewhere(list(by_id)))
        if elsewhere:
            moved = unknown & F.col("message_id").isin(elsewhere)
            n_moved = sum(by_id[message_id] for message_id in elsewhere)
            events = counts["events"]
            events[REASON_UNKNOWN_MESSAGE] -= n_moved
            if not events[REASON_UNKNOWN_MESSAGE]:
                del events[REASON_UNKNOWN_MESSAGE]
            events[REASON_TENANT_MISMATCH] = events.get(REASON_TENANT_MISMATCH, 0) + n_moved
            reason = F.when(moved, F.lit(REASON_TENANT_MISMATCH)).otherwise(reason)
    written = {name: scratch / name for name in tables if (scratch / name).is_dir()}
    clean = {
        name: spark.read.schema(clean_ddl(name) + _extra_ddl(name))
        .parquet(str(written[name]))
        .select(*TABLES[name].names)
        if name in written
        else spark.createDataFrame([], clean_ddl(name))
        for name in TABLES
    }
    named = (
        spark.read.schema(clean_ddl("messages") + _extra_ddl("messages"))
        .parquet(str(written["messages"]))
        .where(F.col(NAMED))
        .select(*TABLES["messages"].names)
        if "messages" in written
        else clean["messages"]
    )
    quarantine = results.where(quarantined).select(
        F.col("_table").alias("table"),
        F.col("_q_row").alias("row_number"),
        F.col("_q_record").alias("record"),
        reason.alias("reason"),
    )
    # parts hold whole tenants: each knows which of its messages a clean event names
    none: Rejected = {}  # Parquet: rows are set aside by the tasks, as the quarantine says
    read = (files, set(sources), counts, none)
    return _tables(clean, quarantine, read, {"parts": results}, named, scratch)


def part_files(tables: SparkTables) -> list[tuple[str, str]]:
    """(clean events file, clean messages file) of each part whose validation kept events,
    when tasks validated whole tenants and wrote them (else none): each part holds whole
    tenants, and its messages file says which of them a clean event names (:data:`NAMED`)."""
    if tables.scratch is None:
        return []
    events = sorted((tables.scratch / "events").glob("part-*.parquet"))
    return [(str(path), str(tables.scratch / "messages" / path.name)) for path in events]


# What a task hands to Spark: a row per quarantined row (and, on unknown-message events, the
# message id), and a row per table and part with its kept rows (``_kept``).
_SPAN_RESULT_DDL = (
    "_table string, _q_row bigint, _q_record string, _q_reason string, message_id string, "
    "_kept bigint"
)


def _extra_ddl(table: str) -> str:
    """The columns a clean table's scratch files hold beyond the contract's."""
    return f", `{NAMED}` boolean" if table == "messages" else ""


def _span_counts(results: DataFrame, read: dict[str, int]) -> dict[str, dict[str | None, int]]:
    """Per table: rows read (``"_read"``, from the files' metadata), kept (None) and
    quarantined by reason, added up from the tasks' count rows. Their one job fills the
    results' cache and needs no shuffle: a group-by here cost a second stage, 0.8 s of a 5 s
    validation at ``local[2]``."""
    out: dict[str, dict[str | None, int]] = {name: {"_read": n} for name, n in read.items()}
    tallies = results.where(F.col("_kept").isNotNull()).select("_table", "_q_reason", "_kept")
    for table, reason, n in tallies.collect():
        if n:
            counted = out.setdefault(table, {})
            counted[reason] = counted.get(reason, 0) + int(n)
    return out


def _validate_spans(shared: Broadcast[list[Span]], tables: tuple[str, ...], scratch: str):  # noqa: ANN202
    """mapInArrow over span numbers: validate each part of the span, write its clean rows of
    ``tables`` to ``scratch``/TABLE/ (Spark's clean types; messages say whether a clean event
    of theirs names them) and return its quarantine and counts (:data:`_SPAN_RESULT_DDL`)."""
    schema = _span_result_schema()

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        spans = shared.value
        for batch in batches:
            for i in batch.column(0).to_pylist():
                span = spans[i]
                for k, raws in enumerate(span.raws()):
                    for name in REQUIRED_TABLES:
                        raws.setdefault(name, empty_raw(name))
                    result = validate_raw_arrow(raws)
                    _write_clean(result, tables, Path(scratch), span.first + k)
                    yield from _span_result(result, tables, schema).to_batches()

    return run


def _span_result_schema() -> pa.Schema:
    types = [part.split(" ") for part in _SPAN_RESULT_DDL.split(", ")]
    return pa.schema([(name, _ARROW_OF_SPARK[kind]) for name, kind in types])


def _write_clean(result: ValidatedArrow, tables: tuple[str, ...], scratch: Path, part: int) -> None:
    """A part's clean rows, one Parquet file per table (none for a table without rows)."""
    for name in tables:
        clean = result.tables[name]
        if not clean.num_rows:
            continue
        columns = _spark_types(name, {c: clean.column(c) for c in clean.column_names})
        if name == "messages":
            columns[NAMED] = _named_messages(clean, result.tables["events"])
        folder = scratch / name
        folder.mkdir(parents=True, exist_ok=True)
        # No dictionaries: encoding them was half of the writing (snappy alone keeps the
        # files about as small)
        pq.write_table(pa.table(columns), folder / f"part-{part:06d}.parquet", use_dictionary=False)


def _span_result(result: ValidatedArrow, tables: tuple[str, ...], schema: pa.Schema) -> pa.Table:
    """A part's quarantine rows (the unknown messages' ids on their events), then its counts:
    a row per table with its kept rows and per table and reason with its quarantined rows
    (``_kept`` set: the quarantine rows have none)."""
    q = result.quarantine
    ids = result.report.tables["events"].unknown_messages
    message_id: list[str | None] = [None] * len(q)
    if ids:
        unknown = np.flatnonzero(
            (q["table"] == "events").to_numpy() & (q["reason"] == REASON_UNKNOWN_MESSAGE).to_numpy()
        )
        if len(unknown) != len(ids):
            raise RuntimeError(f"{len(ids)} unknown message ids for {len(unknown)} rows")
        for row, message in zip(unknown, ids, strict=True):
            message_id[row] = message
    quarantined = pa.table(
        {
            "_table": pa.array(q["table"].tolist(), pa.string()),
            "_q_row": pa.array(q["row_number"].to_numpy(dtype=np.int64), pa.int64()),
            "_q_record": pa.array(q["record"].tolist(), pa.string()),
            "_q_reason": pa.array(q["reason"].tolist(), pa.string()),
            "message_id": pa.array(message_id, pa.string()),
            "_kept": pa.nulls(len(q), pa.int64()),
        },
        schema=schema,
    )
    # the counts: kept rows per table, quarantined rows per table and reason
    tally = Counter(zip(q["table"].tolist(), q["reason"].tolist(), strict=True))
    keys = [(name, None) for name in tables] + list(tally)
    n = len(keys)
    counts = pa.table(
        {
            "_table": pa.array([table for table, _ in keys], pa.string()),
            "_q_row": pa.nulls(n, pa.int64()),
            "_q_record": pa.nulls(n, pa.string()),
            "_q_reason": pa.array([reason for _, reason in keys], pa.string()),
            "message_id": pa.nulls(n, pa.string()),
            "_kept": pa.array(
                [result.tables[t].num_rows if r is None else tally[(t, r)] for t, r in keys],
                pa.int64(),
            ),
        },
        schema=schema,
    )
    return pa.concat_tables([quarantined, counts])


def _bucket_labels(spark: SparkSession, partitions: int, buckets: int | None) -> list[int]:
    """Bucket ids spread evenly over the shuffle partitions: :data:`BUCKETS_PER_PARTITION` for
    each (or ``buckets`` in all, as evenly as they go).

    Spark puts group ``b`` in partition ``pmod(murmur3(b), partitions)``: with the ids 0..n-1,
    two may share a partition while another stays empty (one core then validated everything).
    The ids are picked by that same hash, so each partition gets its share."""
    buckets = buckets or partitions * BUCKETS_PER_PARTITION
    per = -(-buckets // partitions)
    found: dict[int, list[int]] = {}
    start = 0
    while sum(min(len(v), per) for v in found.values()) < min(buckets, partitions * per):
        ids = spark.range(start, start + 64 * partitions * per).select(
            "id", F.pmod(F.hash("id"), F.lit(partitions)).alias("part")
        )
        for row in ids.collect():
            found.setdefault(int(row["part"]), []).append(int(row["id"]))
        start += 64 * partitions * per
    rounds = [ids[:per] for _, ids in sorted(found.items())]
    labels = [ids[i] for i in range(per) for ids in rounds if i < len(ids)]
    return labels[:buckets]


def _split_event_keys(spark: SparkSession, events: DataFrame) -> DataFrame | None:
    """Hashes of the event keys whose rows lie in more than one bucket, as a one-column frame
    ``_split`` (None when there are none, the usual case): one job over two integers a row.

    A hash shared by two event keys can only send more rows apart, which is exact too: every
    row of an event key goes the same way."""
    found = (
        events.groupBy(F.xxhash64(KEY_EVENT).alias("_split"))
        .agg(F.min(BUCKET).alias("_lo"), F.max(BUCKET).alias("_hi"))
        .where(F.col("_lo") != F.col("_hi"))
        .select("_split")
        .collect()
    )
    if not found:
        return None
    return spark.createDataFrame([(row[0],) for row in found], "_split bigint")


def _split_match() -> Column:
    return F.xxhash64(F.col(KEY_EVENT)) == F.col("_split")


def _counts(
    raw: Mapping[str, DataFrame | int], validated: list[DataFrame]
) -> dict[str, dict[str | None, int]]:
    """Per table: rows read (key ``"_read"``) and validated rows by quarantine reason (None:
    kept).

    Two jobs: one global aggregate of conditional counts (rows read, rows kept), which fills
    the cache; then the quarantined rows by reason, from the cache. Grouping every row by its
    table and reason (text keys, a hash map lookup a row) cost a tenth of validation."""
    rows = [
        frame.select(F.lit(name).alias("_table"), F.lit(True).alias("_read"))
        for name, frame in raw.items()
        if isinstance(frame, DataFrame)
    ] + [
        frame.where(F.col("_q_reason").isNull()).select("_table", F.lit(False).alias("_read"))
        for frame in validated
    ]
    union = rows[0]
    for frame in rows[1:]:
        union = union.union(frame)
    read = F.col("_read")
    tallies = [
        F.count_if((F.col("_table") == name) & (read if kind == "_read" else ~read)).alias(
            f"{name}{kind}"
        )
        for name in raw
        for kind in ("_read", "_kept")
    ]
    totals = union.agg(*tallies).collect()[0]
    out: dict[str, dict[str | None, int]] = {}
    for name, given in raw.items():
        out[name] = {"_read": given if isinstance(given, int) else int(totals[f"{name}_read"])}
        if totals[f"{name}_kept"]:
            out[name][None] = int(totals[f"{name}_kept"])
    quarantined = [frame.where(F.col("_q_reason").isNotNull()) for frame in validated]
    if quarantined:
        reasons = quarantined[0].select("_table", "_q_reason")
        for frame in quarantined[1:]:
            reasons = reasons.union(frame.select("_table", "_q_reason"))
        for row in reasons.groupBy("_table", "_q_reason").count().collect():
            out.setdefault(row["_table"], {})[row["_q_reason"]] = int(row["count"])
    return out


def _union(spark: SparkSession, frames: list[DataFrame]) -> DataFrame:
    if not frames:
        return spark.createDataFrame(
            [], "table string, row_number bigint, record string, reason string"
        )
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _table_report(
    name: str,
    source: str,
    counts: dict[str | None, int] | None,
    rejected: list[tuple[int, str, str]],
) -> TableReport:
    """Counts of one table: read = kept + quarantined + duplicates, as the contract reports."""
    if counts is None:
        return TableReport(name, source, 0, 0, 0, {})
    read = counts.get("_read", 0) + len(rejected)
    kept = counts.get(None, 0)
    quarantined = {r: c for r, c in counts.items() if r is not None and r != "_read"}
    for _, _, reason in rejected:
        quarantined[reason] = quarantined.get(reason, 0) + 1
    duplicates = read - kept - sum(quarantined.values())
    return TableReport(name, source, read, kept, duplicates, quarantined)
