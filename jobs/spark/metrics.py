"""The metric spec of :mod:`jobs.metrics.spec`, translated into Spark column expressions.

Nothing here names a metric: counts, their event types, statuses and grains come from
:data:`jobs.metrics.spec.COUNTS`, the tables and their keys from
:data:`jobs.metrics.spec.MODULES`, the rates from :data:`jobs.metrics.spec.RATES`, and the status
predicates are the spec's own callables applied to Spark ``Column`` objects
(:func:`jobs.metrics.spec.count_mask`). The steps are those of
:func:`jobs.metrics.compute.compute_partitions` (window, event status, per-message counts,
partitions per module); the collected partition rows go through the same finishing code as the
local engine's, so the store receives identical rows, and the tables are rolled up from them by
:func:`jobs.metrics.compute.rollup` on the driver (partition rows are few: tenants x channels x
days x keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, IntegralType

from contract.schema import CHANNELS, MESSAGE_CONTEXT
from jobs.metrics.compute import MissingScores, Partitions, coerce, summary_grid
from jobs.metrics.spec import (
    COUNTS,
    DAY_NS,
    MESSAGE_COUNTS,
    MODULES,
    NO_DOMAIN,
    PARTITION_KEY,
    UNKNOWN_KIND,
    Module,
    Window,
    count_mask,
)

if TYPE_CHECKING:
    from jobs.spark.tables import SparkTables

PART_KEYS = ["tenant_id", "channel", "send_day", "in_window", "bot_filter_applied"]
DAY_COLUMN = "day"  # the dashboard's activity day before it becomes ``date`` (as the local engine)


def _mask(name: str) -> str:
    return f"_m_{name}"


def _reduce(name: str) -> Column:
    """Per-message value of a count: events are summed, ``messages`` grains are 0/1."""
    count = COUNTS[name]
    col = F.col(_mask(name))
    return (F.sum(col) if count.grain == "events" else F.max(col)).alias(name)


def _sums(names: Sequence[str]) -> list[Column]:
    return [F.sum(F.col(n)).cast("long").alias(n) for n in names]


def compute_partitions_spark(
    tables: SparkTables,
    scores: DataFrame,
    exclusions: Mapping[tuple[str, str], bool],
    window: Window,
    tenants: Sequence[str] | None = None,
    channels: Sequence[str] = CHANNELS,
) -> tuple[dict[str, DataFrame], Partitions]:
    """Partition rows of every module, computed in Spark.

    Returns the cached Spark frames of computed rows (``send_day``/``day`` as day numbers) and the
    :class:`jobs.metrics.Partitions` the local engine would return for the same inputs. Raises
    :class:`jobs.metrics.MissingScores` when a counted event has no score.
    """
    spark = scores.sparkSession
    day = DAY_NS
    sent = F.col("sent_at")
    m = tables.messages.where(
        (sent >= F.lit(window.stored_start.value))
        & (sent < F.lit(window.end.value))
        & F.col("channel").isin(list(channels))
    )
    if tenants is not None:
        m = m.where(F.col("tenant_id").isin(list(tenants)))
    settings = spark.createDataFrame(
        [(t, c, bool(v)) for (t, c), v in exclusions.items()],
        "tenant_id string, channel string, _filter boolean",
    )
    # The message's own columns (keys of the modules), without its times: days replace them.
    own = [c for c in MESSAGE_CONTEXT if c not in ("sent_at", "delivered_at", "link_count")]
    m = m.join(F.broadcast(settings), ["tenant_id", "channel"], "left").select(
        *own,
        F.expr(f"sent_at div {day}").alias("send_day"),
        (sent >= F.lit(window.start.value)).alias("in_window"),
        F.coalesce(F.col("_filter"), F.lit(False)).alias("bot_filter_applied"),
        F.col("delivered_at").isNotNull().alias("_delivered"),
        F.expr(f"delivered_at div {day}").alias("_delivered_day"),
    )
    # Partitioned by message once: the events' join and the per-message join below then find
    # it in place (the events are shuffled to it, the window messages are not shuffled again).
    m = m.repartition("message_id", "tenant_id").persist(StorageLevel.MEMORY_AND_DISK)

    # Events of delivered window messages, before as_of, with their score and status masks.
    # Event ids are unique within a tenant only: scores carrying tenant_id match on both.
    # Scores first, messages second: the events come out partitioned by message, as the
    # per-message and per-message-day counts below need them (no shuffle of their own).
    keys = ["tenant_id", "event_id"] if "tenant_id" in scores.columns else ["event_id"]
    base = ["send_day", "in_window", "bot_filter_applied", "channel", "recipient_domain"]
    ev = (
        tables.events.select(
            "event_id", "tenant_id", "message_id", "type", "occurred_at", "bot_kind"
        )
        .where(F.col("occurred_at") < F.lit(window.end.value))
        .join(
            scores.select(
                *keys,
                "is_bot",
                # the strongest reason is all the metrics read (bot kind of last resort)
                F.try_element_at(F.col("reasons"), F.lit(1)).alias(_TOP_REASON),
                "model_version",
                F.col("bot_kind").alias("scored_kind"),
            ),
            keys,
            "left",
        )
        .join(
            m.where("_delivered").select("message_id", "tenant_id", *base),
            ["message_id", "tenant_id"],
        )
    )
    masks = [
        count_mask(c, F.col("type"), F.col("is_bot"), F.col("bot_filter_applied"))
        .cast("tinyint")  # 0/1: one byte a row in the cache; every sum of them is a bigint
        .alias(_mask(name))
        for name, c in COUNTS.items()
        if c.grain != "delivered"
    ]
    ev = ev.select("*", *masks).persist(StorageLevel.MEMORY_AND_DISK)
    per_message = ev.groupBy("message_id", "tenant_id").agg(
        *(_reduce(n) for n in MESSAGE_COUNTS[1:]), F.count(F.lit(1)).alias("_events")
    )
    counts = [*MESSAGE_COUNTS[1:], "_events"]
    msg = (
        m.join(per_message, ["message_id", "tenant_id"], "left")
        .fillna(0, subset=counts)
        .withColumn("delivered", F.col("_delivered").cast("long"))
    )
    msg = msg.persist(StorageLevel.MEMORY_AND_DISK)

    rows: dict[str, DataFrame] = {}
    for table, module in MODULES.items():
        keys = list(module.keys)
        if module.grain == "message":
            source = msg
            for k in keys:  # a message without the key belongs to no group (local: dropna)
                source = source.where(F.col(k).isNotNull())
            frame = source.groupBy(*PART_KEYS, *keys).agg(*_sums(module.counts))
        elif module.grain == "segment":
            members = tables.segments.select("tenant_id", *keys, "contact_id").distinct()
            frame = (
                msg.join(members, ["tenant_id", "contact_id"])
                .groupBy(*PART_KEYS, *keys)
                .agg(*_sums(module.counts))
            )
        elif module.grain == "day":
            frame = _day_rows(msg, ev, module)
        elif module.grain == "event":
            frame = _event_rows(ev, module)
        else:  # a new grain in the spec needs its translation here
            raise NotImplementedError(f"metric grain {module.grain!r} has no Spark translation")
        rows[table] = _dated(frame).select(*module.computed_columns)

    summary = msg.groupBy("tenant_id", "channel", "send_day").agg(
        F.count(F.lit(1)).alias("messages"),
        F.sum("delivered").cast("long").alias("delivered"),
        F.sum("_events").cast("long").alias("events"),
    )
    # The checks and totals: events used, unscored ones (and one of them), model versions.
    unscored = F.col("is_bot").isNull()
    totals = ev.groupBy("model_version").agg(
        F.count(F.lit(1)).alias(_TOTAL),
        F.sum(unscored.cast("long")).alias(_MISSING),
        F.min(F.when(unscored, F.col("event_id"))).alias(_EXAMPLE),
    )
    # Every result in one job (the rows are few: tenants x channels x days x keys), its shuffle
    # stages running side by side instead of one small job after another.
    got = _collect_all({**rows, _SUMMARY: summary, _TOTALS: totals})
    missing = int(got[_TOTALS][_MISSING].sum())
    if missing:
        example = got[_TOTALS][_EXAMPLE].dropna().min()
        raise MissingScores(
            f"{missing} events have no score (e.g. event_id {example!r}); "
            "score them or pass a scores file covering them"
        )
    present = sorted(set(got[_SUMMARY]["tenant_id"]))  # every window message is in the summary
    events_used = int(got[_TOTALS][_TOTAL].sum())
    versions = tuple(sorted(v for v in got[_TOTALS]["model_version"] if isinstance(v, str)))
    frames = {name: _typed(got[name], MODULES[name]) for name in rows}
    partitions = Partitions(
        window=window,
        frames=frames,
        summary=summary_grid(got[_SUMMARY], window, tenants or present, channels, exclusions),
        events_used=events_used,
        model_versions=versions,
        tenants=tuple(tenants) if tenants is not None else tuple(present),
        channels=tuple(channels),
    )
    for frame in (m, ev, msg):
        frame.unpersist()
    return rows, partitions


_SUMMARY, _TOTALS = "_summary", "_totals"  # the two results beside the modules' rows
_PART, _TOTAL, _MISSING, _EXAMPLE = "_part", "_total", "_missing", "_example"
_TOP_REASON = "_top_reason"


def _dated(rows: DataFrame) -> DataFrame:
    """Day numbers as dates (``send_day`` -> ``send_date``, ``day`` -> ``date``)."""
    for day, name in (("send_day", "send_date"), (DAY_COLUMN, "date")):
        if day in rows.columns:
            rows = rows.withColumn(name, F.date_from_unix_date(F.col(day))).drop(day)
    return rows


def _collect_all(parts: dict[str, DataFrame]) -> dict[str, pd.DataFrame]:
    """Collect several small results in one Spark job: one union, each part's columns filled
    with zeros / false / nulls elsewhere, split again on the driver (each part keeps its own
    columns, in its order)."""
    wide: dict[str, DataType] = {}
    for frame in parts.values():
        for field in frame.schema.fields:
            wide.setdefault(field.name, field.dataType)

    def filler(kind: DataType) -> Column:
        if isinstance(kind, IntegralType):
            return F.lit(0).cast(kind)  # zeros: integer columns stay int64 in pandas
        if isinstance(kind, BooleanType):
            return F.lit(False)
        return F.lit(None).cast(kind)

    union: DataFrame | None = None
    for name, frame in parts.items():
        cols = [F.lit(name).alias(_PART)] + [
            F.col(c) if c in frame.columns else filler(kind).alias(c) for c, kind in wide.items()
        ]
        branch = frame.select(*cols)
        union = branch if union is None else union.unionByName(branch)
    assert union is not None
    everything = union.toPandas()
    return {
        name: everything.loc[everything[_PART] == name, frame.columns].reset_index(drop=True)
        for name, frame in parts.items()
    }


def _typed(frame: pd.DataFrame, module: Module) -> pd.DataFrame:
    """Computed rows typed (:func:`jobs.metrics.coerce`) and ordered as the local engine
    returns them."""
    frame = coerce(frame, module)
    order = [*PARTITION_KEY, *module.keys, "in_window"]
    return frame.sort_values(order, kind="stable", ignore_index=True)


def _day_rows(msg: DataFrame, ev: DataFrame, module: Module) -> DataFrame:
    """Dashboard rows: delivered by delivery day, events by event day (uniques per message-day)."""
    day = DAY_NS
    others = [n for n in module.counts if n != "delivered"]
    delivered = msg.where("_delivered").select(
        *PART_KEYS,
        F.col("_delivered_day").alias(DAY_COLUMN),
        F.lit(1).cast("long").alias("delivered"),
        *(F.lit(0).cast("long").alias(n) for n in others),
    )
    activity = (
        ev.withColumn(DAY_COLUMN, F.expr(f"occurred_at div {day}"))
        .groupBy("message_id", "tenant_id", *PART_KEYS[1:], DAY_COLUMN)
        .agg(*(_reduce(n) for n in others))
        .select(*PART_KEYS, DAY_COLUMN, F.lit(0).cast("long").alias("delivered"), *others)
    )
    return (
        delivered.unionByName(activity).groupBy(*PART_KEYS, DAY_COLUMN).agg(*_sums(module.counts))
    )


def _event_rows(ev: DataFrame, module: Module) -> DataFrame:
    """Bot events by recipient domain and bot kind (the scores' kind, else the label's, else
    the top reason)."""
    is_bot_row = F.lit(False)
    for name in module.counts:
        if COUNTS[name].status == "bot":
            is_bot_row = is_bot_row | (F.col(_mask(name)) == 1)
    top = F.concat(F.lit("reason:"), F.col(_TOP_REASON))  # null without a reason
    keyed = ev.where(is_bot_row).select(
        *PART_KEYS,
        F.coalesce(F.col("recipient_domain"), F.lit(NO_DOMAIN)).alias("recipient_domain"),
        F.coalesce(
            F.when(F.col("scored_kind") != "", F.col("scored_kind")),
            F.col("bot_kind"),
            top,
            F.lit(UNKNOWN_KIND),
        ).alias("bot_kind"),
        *(F.col(_mask(n)).alias(n) for n in module.counts),
    )
    return keyed.groupBy(*PART_KEYS, *module.keys).agg(*_sums(module.counts))
