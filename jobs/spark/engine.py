"""The Spark engine: batch scoring and metric recompute with the local engine's own code.

- Every Spark setting lives in :func:`spark_session`.
- Data: :func:`jobs.spark.tables.load_tables` reads a data directory (local, or Parquet on any
  Hadoop-compatible path) and validates it with :mod:`contract.validate`, distributed.
- Scoring: events are joined with their message context and grouped so that each group holds
  everything its features look at; each group goes through
  :func:`scoring.batch.score_context` (so :func:`features.pipeline.feature_block`) on an
  executor, with the model loaded once on the driver from the MLflow registry and broadcast as
  booster text + metadata. Two schemes, both exact (see docs/spark.md):

  ``tenant``  one group per tenant: features never look across tenants. The tenant's events
              and messages are cogrouped and joined in the worker (one shuffle of each).
  ``chunk``   one group per (tenant, time chunk ``[T0, T1)``), holding the chunk's events plus
              context rows: the tenant's events in ``[T0 - LONGEST_WINDOW_S, T0)``, every
              earlier event of the messages with events in the chunk and their events in
              ``[T1, T1 + LOOKAHEAD_S)``, and the tenant's latest event (how far its data
              reach). Only the chunk's own rows are kept. This splits big tenants across
              executors.
- Metrics: :mod:`jobs.spark.metrics` cogroups each tenant's window messages, segments, events and
  scores and runs :func:`jobs.metrics.compute_partitions` on them, as the local engine does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
from pyspark import SparkConf, SparkContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from contract.schema import CHANNELS, EVENTS, MESSAGE_CONTEXT, SCORE_COLUMNS
from contract.validate import empty_table
from core.errors import BotfilterError
from core.settings import Settings
from features.definitions import LONGEST_WINDOW_S, LOOKAHEAD_S
from jobs.metrics import Partitions, Window, parse_reasons
from jobs.spark.metrics import compute_partitions_spark
from jobs.spark.tables import (
    NAMED,
    SparkTables,
    arrow_to_clean_pandas,
    as_uri_or_path,
    clean_to_arrow,
    load_tables,
    part_files,
)
from scoring.scores_file import write_scores

# The imports left inside functions are measured (tests/unit/test_cli_startup.py's method, on
# top of what every Spark command loads): LightGBM and scoring.model 4.3 s, features.pipeline
# 0.8 s, jobs.recompute (the store) 0.75 s, scoring.registry (MLflow). A validation or
# recompute-from-scores job, and each Spark Python worker, pays them only when it scores.
if TYPE_CHECKING:
    from pyspark import Broadcast

    from contract.tables import CleanTables
    from features.pipeline import Enrichers
    from jobs.recompute import Engine, Scorer
    from scoring.model import BotModel

# tenant_id second, as the local engine's scores (an event id is unique within its tenant only).
SCORES_DDL = (
    "event_id string, tenant_id string, bot_score double, is_bot boolean, reasons array<string>, "
    "model_version string, bot_kind string"
)
SCHEMES = ("tenant", "chunk")
CORE = "_core"
CHUNK = "_chunk"
NS = 1_000_000_000

#: Spark settings applied unless the launcher (spark-submit --conf) already set them.
SPARK_DEFAULTS: dict[str, str] = {
    "spark.app.name": "botfilter",
    # Timestamps are exchanged with Python as UTC; day boundaries of the metrics are UTC days.
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.caseSensitive": "true",  # column names are exact, as in the contract
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Rows per Arrow batch between the JVM and Python workers (mapInArrow / scans).
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    # Parquet TIMESTAMP(NANOS) (pandas' default) arrives as int64; jobs.spark.tables restores it.
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.python.worker.reuse": "true",  # keeps each worker's model and enrichers loaded
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}


def _local_cores(master: str) -> int | None:
    """Cores of a ``local[N]`` / ``local[*]`` / ``local`` master, else None."""
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        inner = master[6:-1].split(",")[0]
        return os.cpu_count() or 1 if inner == "*" else int(inner)
    return None


def spark_session(
    settings: Settings,
    master: str | None = None,
    *,
    ui: bool = False,
    driver_memory: str = "4g",
    shuffle_partitions: int | None = None,
    arrow_batch_rows: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> SparkSession:
    """The one place Spark is configured; returns the active session (created if needed).

    ``master``: default ``settings.spark_master``. Local masters bind to 127.0.0.1
    (``SPARK_LOCAL_IP``) and run the Python workers with this interpreter; on a cluster those come
    from spark-submit. Shuffle partitions default to one per local core (200 on a cluster, Spark's).
    """
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Under spark-submit the JVM is already up and holds the launcher's --master and --conf
        # as system properties; SparkConf() reads them only once connected to it. (Without a
        # launcher there is no JVM yet, and starting one here would fix its memory too early.)
        SparkContext._ensure_initialized()
    launched = SparkConf()  # what spark-submit / spark-defaults.conf already set
    # Under spark-submit the launcher's master wins unless one is asked for explicitly.
    master = master or launched.get("spark.master", None) or settings.spark_master
    cores = _local_cores(master)
    if cores is not None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    wanted = dict(SPARK_DEFAULTS)
    wanted["spark.ui.enabled"] = "true" if ui else "false"
    if cores is not None:
        wanted["spark.driver.memory"] = driver_memory
        wanted["spark.driver.host"] = "127.0.0.1"
        wanted["spark.driver.bindAddress"] = "127.0.0.1"
        # One shuffle partition per core: more only adds tasks, each with its fixed cost.
        wanted["spark.sql.shuffle.partitions"] = str(shuffle_partitions or cores)
    elif shuffle_partitions:
        wanted["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    if arrow_batch_rows:
        wanted["spark.sql.execution.arrow.maxRecordsPerBatch"] = str(arrow_batch_rows)
    wanted.update(extra or {})
    builder = SparkSession.builder.master(master)
    for key, value in wanted.items():
        if key in (extra or {}) or not launched.contains(key):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# --- the model on executors ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPayload:
    """What executors need to rebuild the driver's model: trees as text plus metadata."""

    booster: str
    metadata: dict[str, Any]
    version: str
    compiled: bool
    threads: int = 1

    @classmethod
    def of(cls, model: BotModel, threads: int = 1) -> ModelPayload:
        return cls(
            model.booster.model_to_string(),
            model.metadata(),
            model.version,
            model._compiled is not None,
            threads,
        )

    @property
    def key(self) -> str:
        return hashlib.sha256(self.booster.encode()).hexdigest()[:16]


_WORKER: dict[str, Any] = {}  # per Python worker process: models by payload key, enrichers


def _worker_model(payload: ModelPayload) -> BotModel:
    """The model on this worker, built (and compiled, like the driver's) once per process."""
    model = _WORKER.get(payload.key)
    if model is None:
        import lightgbm as lgb

        from scoring.model import BotModel

        # from_metadata: the kind head travels in the metadata
        booster = lgb.Booster(model_str=payload.booster)
        model = BotModel.from_metadata(booster, payload.metadata, payload.version, payload.threads)
        if payload.compiled:
            cache = Path(tempfile.gettempdir()) / "botfilter-spark" / payload.key
            cache.mkdir(parents=True, exist_ok=True)
            # Workers of one host share the compiled trees: one compiles, the others load them.
            with open(cache / ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                model.compile(cache)
        _WORKER[payload.key] = model
    return model


def _worker_enrichers() -> Enrichers:
    enrichers = _WORKER.get("enrichers")
    if enrichers is None:
        from features.pipeline import Enrichers

        enrichers = _WORKER["enrichers"] = Enrichers.load()
    return enrichers


def warm_up(spark: SparkSession, payload: ModelPayload) -> int:
    """Load the model (compiled like the driver's) and the enrichers in each Python worker, and
    score two example events there (the first scoring call of a process compiles and imports
    what later calls reuse).

    What every job pays once per worker process, whatever the data; benchmarks call this first
    so that start-up is reported apart from per-event work. Returns the tasks run."""
    shipped = spark.sparkContext.broadcast(payload)
    tasks = spark.sparkContext.defaultParallelism
    columns = context_columns()
    example = _example_context()

    def run(batches):  # noqa: ANN001, ANN202
        for batch in batches:
            _score_table(example, shipped.value, columns)
            yield batch

    spark.range(tasks, numPartitions=tasks).mapInArrow(run, "id long").collect()
    return tasks


def _example_context() -> pa.Table:
    """Two clean events of one email (an open and a click) in the event-context columns, as a
    scoring group receives them."""
    from contract.validate import validate_tables

    messages = pd.DataFrame(
        {
            "message_id": ["m1"],
            "tenant_id": ["warm-up"],
            "channel": ["email"],
            "contact_id": ["c1"],
            "sent_at": ["2026-01-01T00:00:00Z"],
            "delivered_at": ["2026-01-01T00:00:01Z"],
        }
    )
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "tenant_id": ["warm-up"] * 2,
            "message_id": ["m1"] * 2,
            "type": ["open", "click"],
            "occurred_at": ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
        }
    )
    clean = validate_tables({"messages": messages, "events": events})
    joined = clean_to_arrow("events", clean.events).join(
        clean_to_arrow("messages", clean.messages).select(_message_context()),
        ["tenant_id", "message_id"],
        join_type="inner",
        use_threads=False,
    )
    return joined.select(context_columns())


def _score_table(data: pa.Table, payload: ModelPayload, columns: list[str]) -> pa.Table:
    """Score one group's context rows; the scores of its own rows (all, or those marked core)."""
    from scoring.batch import score_context_arrow

    ctx = _context_frame(data, columns)
    scores = score_context_arrow(ctx, _worker_model(payload), _worker_enrichers())
    if CORE in data.column_names:
        scores = scores.filter(data.column(CORE))
    return scores


def _score_groups(payload: Broadcast[ModelPayload], columns: list[str]):  # noqa: ANN202
    """applyInArrow: score one group of event-context rows."""

    def run(data: pa.Table) -> pa.Table:
        return _score_table(data, payload.value, columns)

    return run


def _score_tenants(payload: Broadcast[ModelPayload], columns: list[str]):  # noqa: ANN202
    """cogroup applyInArrow: one tenant's events and messages, joined here as
    :func:`_with_context` joins them (inner, on tenant and message id), then scored."""

    def run(events: pa.Table, messages: pa.Table) -> pa.Table:
        return _score_joined(events, messages, payload.value, columns)

    return run


def _score_joined(
    events: pa.Table, messages: pa.Table, payload: ModelPayload, columns: list[str]
) -> pa.Table:
    """Whole tenants' events joined with their messages (inner, on tenant and message id, as
    :func:`_with_context` joins them), then scored."""
    keys = ["tenant_id", "message_id"]
    data = events.join(messages, keys, join_type="inner", use_threads=False)
    return _score_table(data.select(columns), payload, columns)


def _score_part_files(  # noqa: ANN202
    payload: Broadcast[ModelPayload], columns: list[str], files: list[tuple[str, str]]
):
    """mapInArrow over part numbers: one validated part's clean events and the messages they
    name, read from the files validation wrote, joined and scored as :func:`_score_tenants`
    joins and scores one tenant."""
    import pyarrow.parquet as pq

    message_columns = _message_context()

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for i in batch.column(0).to_pylist():
                events_file, messages_file = files[i]
                events = pq.read_table(events_file, columns=list(EVENTS.names))
                messages = pq.read_table(messages_file, columns=[*message_columns, NAMED])
                named = messages.filter(messages.column(NAMED)).select(message_columns)
                yield from _score_joined(events, named, payload.value, columns).to_batches()

    return run


def _context_frame(data: pa.Table, columns: list[str]) -> pd.DataFrame:
    """The event-context frame of :func:`features.pipeline.event_context`, with its dtypes."""
    events = arrow_to_clean_pandas("events", data, [c for c in columns if c in EVENTS.names])
    context = [c for c in columns if c not in EVENTS.names]
    messages = arrow_to_clean_pandas("messages", data, context)
    return events.join(messages)


def context_columns() -> list[str]:
    """Columns of the event-context frame: the events' then their message's (as event_context)."""
    return [*EVENTS.names, *(c for c in MESSAGE_CONTEXT if c not in EVENTS.names)]


def _message_context() -> list[str]:
    """The message columns an event's context takes: its keys, then what the event lacks."""
    return ["tenant_id", "message_id", *(c for c in MESSAGE_CONTEXT if c not in EVENTS.names)]


def _apart(frame: DataFrame, columns: list[str]) -> DataFrame:
    """``frame``'s ``columns`` under new column identities. The clean events and messages are
    views of the same cached validation result, and with an event id that names two messages
    (two tenants sharing one: nothing wrong) both sides come from the same union, which Spark
    refused to join or cogroup ("Column tenant_id#81, message_id#80 are ambiguous")."""
    return frame.select(*columns).toDF(*columns)


def _with_context(tables: CleanTables[DataFrame]) -> DataFrame:
    # A message is (tenant_id, message_id): two tenants may use the same id (PRODUCT.md).
    keys = ["tenant_id", "message_id"]
    messages = _apart(tables.messages, _message_context())
    return tables.events.join(messages, keys).select(*context_columns())


def _chunked(ctx: DataFrame, chunk_seconds: int) -> DataFrame:
    """Rows of each (tenant, chunk) group: its own events plus the context they need."""
    if chunk_seconds < LONGEST_WINDOW_S:
        raise BotfilterError(f"chunks must be at least {LONGEST_WINDOW_S} s long")
    size = chunk_seconds * NS
    lookback = LONGEST_WINDOW_S * NS
    t = F.col("occurred_at")
    chunk = F.expr(f"occurred_at div {size}")
    own = ctx.withColumn(CHUNK, chunk).withColumn(CORE, F.lit(True))
    # Burst context: events in the last LONGEST_WINDOW_S before the next chunk starts.
    nxt = (chunk + 1) * F.lit(size)
    burst = (
        ctx.where(t >= nxt - F.lit(lookback))
        .withColumn(CHUNK, chunk + 1)
        .withColumn(CORE, F.lit(False))
    )
    # Message history: every earlier event of each message with events in the chunk.
    chunks_of = own.select("tenant_id", "message_id", F.col(CHUNK).alias("_target")).distinct()
    history = (
        ctx.withColumn("_own_chunk", chunk)
        .join(chunks_of, ["tenant_id", "message_id"])
        .where(F.col("_own_chunk") < F.col("_target"))
        .drop("_own_chunk")
        .withColumnRenamed("_target", CHUNK)
        .withColumn(CORE, F.lit(False))
    )
    # Look-ahead: the events of those messages in the LOOKAHEAD_S after the chunk ends ...
    end = (F.col("_target") + 1) * F.lit(size)
    ahead = (
        ctx.withColumn("_own_chunk", chunk)
        .join(chunks_of, ["tenant_id", "message_id"])
        .where((F.col("_own_chunk") > F.col("_target")) & (t < end + F.lit(LOOKAHEAD_S * NS)))
        .drop("_own_chunk")
        .withColumnRenamed("_target", CHUNK)
        .withColumn(CORE, F.lit(False))
    )
    # ... and the tenant's latest event, so that the group's data reach as far as the tenant's
    # (features.pipeline.tenant_horizon): a chunk's last events' windows pass as they do whole.
    latest = ctx.groupBy("tenant_id").agg(F.max("occurred_at").alias("_latest"))
    reach = (
        ctx.join(latest, "tenant_id")
        .where(t == F.col("_latest"))
        .drop("_latest")
        .join(own.select("tenant_id", CHUNK).distinct(), "tenant_id")
        .withColumn(CORE, F.lit(False))
    )
    context = (
        burst.unionByName(history)
        .unionByName(ahead)
        .unionByName(reach)
        .dropDuplicates(["tenant_id", CHUNK, "event_id"])
    )
    return own.unionByName(context)


def load_model_payload(settings: Settings, model_uri: str | None = None) -> ModelPayload:
    """Resolve the model on the driver (registry alias or URI) and package it for executors."""
    from scoring.registry import load_model

    return ModelPayload.of(load_model(settings, model_uri, compile=True))


def score_spark(
    spark: SparkSession,
    data: str | Path | SparkTables,
    settings: Settings,
    model_uri: str | None = None,
    *,
    model: BotModel | None = None,
    scheme: str = "tenant",
    chunk_seconds: int = 6 * 3600,
    payload: ModelPayload | None = None,
) -> DataFrame:
    """The scores table (Spark DataFrame: ``SCORE_COLUMNS`` with ``tenant_id`` second, as the
    local engine's) for every clean event.

    ``model`` / ``payload``: score with this model instead of resolving ``model_uri`` (default:
    the champion alias) on the driver. ``scheme``: ``tenant`` or ``chunk`` (``chunk_seconds``
    long, at least the longest window).
    """
    if scheme not in SCHEMES:
        raise BotfilterError(f"unknown partitioning scheme {scheme!r}: use {SCHEMES}")
    tables = data if not isinstance(data, str | Path) else load_tables(spark, data)
    if payload is None:
        payload = ModelPayload.of(model) if model else load_model_payload(settings, model_uri)
    shipped = spark.sparkContext.broadcast(payload)
    columns = context_columns()
    files = part_files(tables)
    if scheme == "tenant" and files:
        # Validation wrote each part of whole tenants to its own files: a task scores a part
        # where it lies, and no row is shuffled (features never look across tenants). Spark
        # balances the parts over the cores.
        return spark.range(len(files), numPartitions=len(files)).mapInArrow(
            _score_part_files(shipped, columns, files), SCORES_DDL
        )
    if scheme == "tenant":
        # Events and messages meet per tenant in Python: one shuffle of each by tenant, where
        # a join first would shuffle both by message, then the joined rows again by tenant.
        events = tables.events.select(*EVENTS.names).groupBy("tenant_id")
        named = tables.messages if tables.named_messages is None else tables.named_messages
        messages = _apart(named, _message_context()).groupBy("tenant_id")
        return events.cogroup(messages).applyInArrow(_score_tenants(shipped, columns), SCORES_DDL)
    groups = _chunked(_with_context(tables), chunk_seconds).groupBy("tenant_id", CHUNK)
    return groups.applyInArrow(_score_groups(shipped, columns), SCORES_DDL)


def scores_to_pandas(scores: DataFrame) -> pd.DataFrame:
    """Collect a Spark scores table as the local engine's frame (reasons as lists)."""
    frame = scores.toPandas()
    # object whatever the rows: without any, Arrow's nulls came back as float64 and the
    # scores file could not be written (every event quarantined: an audit)
    reasons = [list(r) if r is not None else [] for r in frame["reasons"]]
    frame["reasons"] = pd.Series(reasons, index=frame.index, dtype=object)
    tenant = ["tenant_id"] if "tenant_id" in frame.columns else []
    return frame[[SCORE_COLUMNS[0], *tenant, *SCORE_COLUMNS[1:]]]


# --- recompute ------------------------------------------------------------------------------------


@dataclass
class SparkRecompute:
    """A Spark recompute: the partitions (as :func:`jobs.metrics.compute_partitions` returns
    them, ready for the store) and the four tables rolled up from them."""

    partitions: Partitions
    tables: dict[str, pd.DataFrame]
    scores_source: str


def exclusions_from_settings(settings_frame: DataFrame) -> dict[tuple[str, str], bool]:
    """``{(tenant, channel): exclude bots}`` from a clean settings table (small: collected)."""
    out: dict[tuple[str, str], bool] = {}
    for row in settings_frame.select(
        "tenant_id", "exclude_bots_email", "exclude_bots_sms"
    ).collect():
        out[(row["tenant_id"], "email")] = bool(row["exclude_bots_email"])
        out[(row["tenant_id"], "sms")] = bool(row["exclude_bots_sms"])
    return out


def recompute_spark(
    spark: SparkSession,
    data: str | Path | SparkTables,
    settings: Settings,
    *,
    as_of: pd.Timestamp | str | None = None,
    tenants: Sequence[str] | None = None,
    channels: Sequence[str] = CHANNELS,
    scores: pd.DataFrame | DataFrame | None = None,
    exclusions: Mapping[tuple[str, str], bool] | None = None,
    model_uri: str | None = None,
    model: BotModel | None = None,
    scheme: str = "tenant",
) -> SparkRecompute:
    """Recompute the window ending at ``as_of`` with Spark: scores (a pandas scores table, a Spark
    one, or computed in Spark), then the metric partitions, computed per tenant on executors
    (:mod:`jobs.spark.metrics`), and the four tables rolled up from them. ``scores_source`` of the result is ``file``, ``given`` or ``scored``.

    ``exclusions`` default to the data's settings table (the CLI passes the metrics store's).
    """
    tables = data if not isinstance(data, str | Path) else load_tables(spark, data)
    window = Window.ending(as_of, settings.window_days)
    if exclusions is None:
        exclusions = exclusions_from_settings(tables.settings)
    if scores is None:
        scored = score_spark(spark, tables, settings, model_uri, model=model, scheme=scheme)
        source = "scored"
    elif isinstance(scores, pd.DataFrame):
        scored = scores_from_pandas(spark, scores)
        source = "file"
    else:  # scores already in Spark (e.g. from score_spark)
        scored, source = scores, "given"
    partitions = compute_partitions_spark(
        tables, scored, exclusions, window, tenants=tenants, channels=channels
    )
    # The partition rows are on the driver already (small: tenants x channels x days x keys):
    # the local engine's rollup makes the tables there.
    return SparkRecompute(partitions, partitions.tables(), source)


def scores_from_pandas(spark: SparkSession, scores: pd.DataFrame) -> DataFrame:
    """A checked scores table (``jobs.recompute.check_scores``) as a Spark DataFrame.

    Scores loaded from the metrics store carry ``top_reason`` instead of the ``reasons`` lists
    (``jobs.store.Store.load_scores``). The metrics read only the strongest reason, so such a
    table crosses as one-element lists. A table of stored and fresh scores has both columns,
    each filled for its own rows only (``jobs.recompute.resolve_scores`` concatenates them):
    a row's ``top_reason`` when it has one, else its ``reasons``.
    """
    from jobs.recompute import check_scores  # lazy: see the note on the imports above

    if "top_reason" in scores.columns:
        top = scores["top_reason"].to_numpy(dtype=object)
        listed = scores["reasons"] if "reasons" in scores.columns else [None] * len(scores)
        reasons = [
            [str(t)] if isinstance(t, str) and t else parse_reasons(r)[:1]
            for t, r in zip(top, listed, strict=True)
        ]
        frame = check_scores(scores.drop(columns="reasons", errors="ignore").assign(reasons=None))
    else:
        frame = check_scores(scores)
        reasons = [parse_reasons(r) for r in frame["reasons"]]
    tenant = (  # event ids are unique within a tenant only: keep tenant_id when given
        {"tenant_id": pa.array(frame["tenant_id"].tolist(), pa.string())}
        if "tenant_id" in frame.columns
        else {}
    )
    table = pa.table(
        {
            **tenant,
            "event_id": pa.array(frame["event_id"].tolist(), pa.string()),
            "bot_score": pa.array(frame["bot_score"].to_numpy(dtype=float), pa.float64()),
            "is_bot": pa.array(frame["is_bot"].to_numpy(dtype=bool), pa.bool_()),
            "reasons": pa.array(reasons, pa.list_(pa.string())),
            "model_version": pa.array(frame["model_version"].tolist(), pa.string()),
            "bot_kind": pa.array(frame["bot_kind"].tolist(), pa.string()),
        }
    )
    return spark.createDataFrame(table)


# --- what the CLI calls ---------------------------------------------------------------------------


def is_local_path(path: str | Path) -> bool:
    """A plain file-system path (not a URI such as ``s3a://`` or ``hdfs://``)."""
    return "://" not in as_uri_or_path(path)


def write_scores_spark(scores: DataFrame, out: str | Path) -> str:
    """Write a Spark scores table: a local ``.parquet``/``.csv`` file exactly as the local engine
    writes it (collected on the driver), or a Parquet directory on any Hadoop path."""
    if is_local_path(out):
        path = Path(out)
        if path.suffix not in (".parquet", ".csv"):
            raise BotfilterError(f"{out}: the scores file must end in .parquet or .csv")
        write_scores(scores_to_pandas(scores), path)
        return str(path)
    if not str(out).rstrip("/").endswith(".parquet"):
        raise BotfilterError(f"{out}: remote scores are written as Parquet (end it in .parquet)")
    scores.write.mode("overwrite").parquet(str(out))
    return str(out)


@dataclass
class ScoreRun:
    """What ``botfilter score --engine spark`` did."""

    events: int
    bots: int
    model_version: str
    out: str
    report: Any  # contract.counts.Report of the validation


def run_score(
    settings: Settings,
    data: str | Path,
    out: str | Path,
    model_uri: str | None = None,
    master: str | None = None,
    scheme: str = "tenant",
) -> ScoreRun:
    """``botfilter score --engine spark``: validate, score and write, all in Spark."""
    out = as_uri_or_path(out)
    if is_local_path(out) and Path(out).suffix not in (".parquet", ".csv"):
        raise BotfilterError(f"{out}: the scores file must end in .parquet or .csv")
    spark = spark_session(settings, master)
    tables = load_tables(spark, str(data))
    payload = load_model_payload(settings, model_uri)
    scores = score_spark(spark, tables, settings, scheme=scheme, payload=payload).cache()
    counts = scores.agg(F.count(F.lit(1)), F.sum(F.col("is_bot").cast("long"))).collect()[0]
    written = write_scores_spark(scores, out)
    scores.unpersist()
    tables.unpersist()
    return ScoreRun(int(counts[0]), int(counts[1] or 0), payload.version, written, tables.report)


def spark_frames(
    spark: SparkSession,
    messages: pd.DataFrame,
    events: pd.DataFrame,
    segments: pd.DataFrame | None = None,
    settings_table: pd.DataFrame | None = None,
) -> SparkTables:
    """Clean pandas tables (already validated by the contract) as Spark tables."""
    frames = {
        "messages": messages,
        "events": events,
        "segments": segments if segments is not None else empty_table("segments"),
        "settings": settings_table if settings_table is not None else empty_table("settings"),
    }
    spark_tables = {
        name: spark.createDataFrame(clean_to_arrow(name, frame)) for name, frame in frames.items()
    }
    quarantine = spark.createDataFrame(
        [], "table string, row_number bigint, record string, reason string"
    )
    return SparkTables(
        spark_tables["messages"],
        spark_tables["events"],
        spark_tables["segments"],
        spark_tables["settings"],
        quarantine=quarantine,
        report=None,
    )


def partitions_engine(spark: SparkSession) -> Engine:
    """A drop-in for :func:`jobs.metrics.compute_partitions` (``RecomputeOptions.engine`` of
    ``jobs.recompute``) that computes in Spark, per tenant. Takes the same pandas inputs; Spark-native
    callers use :func:`jobs.spark.metrics.compute_partitions_spark` with Spark tables directly."""

    def compute(
        messages: pd.DataFrame,
        events: pd.DataFrame,
        scores: pd.DataFrame,
        exclusions: Mapping[tuple[str, str], bool],
        window: Window,
        segments: pd.DataFrame | None = None,
        tenants: Sequence[str] | None = None,
        channels: Sequence[str] = CHANNELS,
    ) -> Partitions:
        tables = spark_frames(spark, messages, events, segments)
        return compute_partitions_spark(
            tables, scores_from_pandas(spark, scores), exclusions, window, tenants, channels
        )

    return compute


def spark_scorer(
    spark: SparkSession, settings: Settings, model_uri: str | None = None, scheme: str = "tenant"
) -> Scorer:
    """A scorer for ``RecomputeOptions.scorer`` of ``jobs.recompute``: scores clean pandas tables
    in Spark and returns the local engine's scores frame."""

    def score(tables: CleanTables[pd.DataFrame], /) -> pd.DataFrame:
        frames = spark_frames(spark, tables.messages, tables.events)
        return scores_to_pandas(score_spark(spark, frames, settings, model_uri, scheme=scheme))

    return score
