"""Metric partitions in Spark, computed per tenant by the local engine's own code.

Metrics never look across tenants, so each tenant's partition rows are exactly what
:func:`jobs.metrics.compute_partitions` returns for that tenant's rows alone. Spark only moves the
rows: one cogroup by ``tenant_id`` brings each tenant's window messages and segment memberships
(one side) and its events before ``as_of`` and their scores (the other side) to one Python call,
which runs ``compute_partitions`` on them as pandas frames (a tenant's data must fit one
executor, as for scoring). The partition rows come back to the driver (they are few: channels x
days x keys per tenant), are put together in the local engine's order, and the summary grid and
the tables are built from them with the local engine's ``summary_grid`` and ``rollup``.

A counted event without a score raises :class:`jobs.metrics.MissingScores` with the count over
every tenant, as the local engine does.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from contract.schema import CHANNELS
from contract.validate import empty_table
from core.errors import BotfilterError
from jobs.metrics.compute import MissingScores, Partitions, compute_partitions, summary_grid
from jobs.metrics.spec import EVENT_COLUMNS, MESSAGE_COLUMNS, PARTITION_KEY, Window

if TYPE_CHECKING:
    from jobs.spark.tables import SparkTables

SIDE = "_side"  # which table a row of a cogroup side comes from
MESSAGE, SEGMENT, EVENT, SCORE = "message", "segment", "event", "score"
SCORED_KIND = "_scored_kind"  # the scores' bot_kind, beside the events' own label
SEGMENT_COLUMNS = ("tenant_id", "segment_id", "contact_id")
SCORE_FIELDS = ("event_id", "tenant_id", "is_bot", "top_reason", "model_version", "bot_kind")
RESULT_DDL = "tenant_id string, _missing bigint, _example string, _rows binary"
COUNTS = ("messages", "delivered", "events")  # the summary's counts per partition


def compute_partitions_spark(
    tables: SparkTables,
    scores: DataFrame,
    exclusions: Mapping[tuple[str, str], bool],
    window: Window,
    tenants: Sequence[str] | None = None,
    channels: Sequence[str] = CHANNELS,
) -> Partitions:
    """The :class:`jobs.metrics.Partitions` the local engine would return for the same inputs,
    computed tenant by tenant on executors. Raises :class:`jobs.metrics.MissingScores` when a
    counted event has no score."""
    sent = F.col("sent_at")
    messages = tables.messages.where(
        (sent >= F.lit(window.stored_start.value))
        & (sent < F.lit(window.end.value))
        & F.col("channel").isin(list(channels))
    )
    events = tables.events.where(F.col("occurred_at") < F.lit(window.end.value))
    segments = tables.segments
    if "tenant_id" not in scores.columns:
        scores = _scores_with_tenants(scores, events)
    if tenants is not None:
        wanted = F.col("tenant_id").isin(list(tenants))
        messages, events, segments, scores = (
            frame.where(wanted) for frame in (messages, events, segments, scores)
        )
    message_columns = [c for c in MESSAGE_COLUMNS if c in tables.messages.columns]
    left = messages.select(*message_columns, F.lit(MESSAGE).alias(SIDE)).unionByName(
        segments.select(*SEGMENT_COLUMNS, F.lit(SEGMENT).alias(SIDE)), allowMissingColumns=True
    )
    right = events.select(*EVENT_COLUMNS, F.lit(EVENT).alias(SIDE)).unionByName(
        scores.select(
            "event_id",
            "tenant_id",
            "is_bot",
            # the strongest reason is all the metrics read of the reasons (bot kind of last resort)
            F.try_element_at(F.col("reasons"), F.lit(1)).alias("top_reason"),
            "model_version",
            F.col("bot_kind").alias(SCORED_KIND),
            F.lit(SCORE).alias(SIDE),
        ),
        allowMissingColumns=True,
    )
    run = _tenant_partitions(dict(exclusions), window, tuple(channels), message_columns)
    got = (
        left.groupBy("tenant_id")
        .cogroup(right.groupBy("tenant_id"))
        .applyInArrow(run, RESULT_DDL)
        .toArrow()
    )
    return _assemble(got, exclusions, window, tenants, channels)


def _scores_with_tenants(scores: DataFrame, events: DataFrame) -> DataFrame:
    """Scores without ``tenant_id`` match events by ``event_id`` alone (the local engine's
    rule): each score goes to every tenant that has an event of its id. Such scores must not
    repeat an id, as the local engine requires."""
    repeated = scores.groupBy("event_id").count().where(F.col("count") > 1).limit(1).collect()
    if repeated:
        raise BotfilterError(
            f"event_id {repeated[0]['event_id']!r} is scored more than once and the "
            "scores have no tenant_id to tell its tenants apart"
        )
    owners = events.select("event_id", "tenant_id").distinct()
    return scores.join(owners, "event_id")


def _tenant_partitions(
    exclusions: dict[tuple[str, str], bool],
    window: Window,
    channels: tuple[str, ...],
    message_columns: list[str],
):  # noqa: ANN202
    """cogroup applyInArrow: one tenant's partition rows by :func:`compute_partitions`, pickled
    (frames of several schemas in one column); or the count of its unscored events."""

    def run(left: pa.Table, right: pa.Table) -> pa.Table:
        from jobs.spark.tables import arrow_to_clean_pandas

        messages = _side(left, MESSAGE)
        if messages.num_rows == 0:  # no window message: nothing of this tenant counts
            return _result_schema().empty_table()
        tenant = messages.column("tenant_id")[0].as_py()
        segments = _side(left, SEGMENT)
        events = _side(right, EVENT)
        scored = _side(right, SCORE)
        scores = pa.table(
            {
                name: scored.column(SCORED_KIND if name == "bot_kind" else name)
                for name in SCORE_FIELDS
            }
        )
        try:
            parts = compute_partitions(
                arrow_to_clean_pandas("messages", messages, message_columns),
                arrow_to_clean_pandas("events", events, list(EVENT_COLUMNS)),
                scores.to_pandas(),
                exclusions,
                window,
                segments=arrow_to_clean_pandas("segments", segments, list(SEGMENT_COLUMNS)),
                tenants=[tenant],
                channels=channels,
            )
        except MissingScores as exc:
            return _result(tenant, exc.missing, str(exc.example), None)
        found = (parts.frames, parts.summary, parts.events_used, parts.model_versions)
        return _result(tenant, 0, None, pickle.dumps(found, protocol=pickle.HIGHEST_PROTOCOL))

    return run


def _side(table: pa.Table, side: str) -> pa.Table:
    return table.filter(pc.equal(table.column(SIDE), side))


def _result_schema() -> pa.Schema:
    return pa.schema(
        [
            ("tenant_id", pa.string()),
            ("_missing", pa.int64()),
            ("_example", pa.string()),
            ("_rows", pa.binary()),
        ]
    )


def _result(tenant: str, missing: int, example: str | None, rows: bytes | None) -> pa.Table:
    return pa.table(
        {"tenant_id": [tenant], "_missing": [missing], "_example": [example], "_rows": [rows]},
        schema=_result_schema(),
    )


def _assemble(
    got: pa.Table,
    exclusions: Mapping[tuple[str, str], bool],
    window: Window,
    tenants: Sequence[str] | None,
    channels: Sequence[str],
) -> Partitions:
    """One :class:`Partitions` from the tenants' results, in the local engine's row order
    (every module's rows are sorted by tenant first)."""
    results = sorted(got.to_pylist(), key=lambda r: r["tenant_id"])
    missing = sum(int(r["_missing"]) for r in results)
    if missing:
        example = min(r["_example"] for r in results if r["_missing"])
        raise MissingScores(missing, example, window.stored_start)
    present = [r["tenant_id"] for r in results]
    scope = tuple(tenants) if tenants is not None else tuple(present)
    found: list[tuple[dict[str, pd.DataFrame], pd.DataFrame, int, tuple[str, ...]]] = [
        pickle.loads(r["_rows"]) for r in results
    ]
    if not found:  # no window message at all: the local engine's empty result
        return _empty(exclusions, window, scope, channels)
    frames = {
        name: pd.concat([f[0][name] for f in found], ignore_index=True) for name in found[0][0]
    }
    counts = pd.concat([f[1][[*PARTITION_KEY, *COUNTS]] for f in found], ignore_index=True)
    versions: set[Any] = set().union(*(f[3] for f in found))
    return Partitions(
        window=window,
        frames=frames,
        summary=summary_grid(counts, window, scope, channels, exclusions),
        events_used=sum(f[2] for f in found),
        model_versions=tuple(sorted(versions)),
        tenants=scope,
        channels=tuple(channels),
        tenant_versions={t: tuple(f[3]) for t, f in zip(present, found, strict=True) if f[3]},
    )


def _empty(
    exclusions: Mapping[tuple[str, str], bool],
    window: Window,
    tenants: Sequence[str],
    channels: Sequence[str],
) -> Partitions:
    """What :func:`compute_partitions` returns when no message is in the window."""
    scores = pd.DataFrame({"event_id": [], "tenant_id": [], "is_bot": []})
    return compute_partitions(
        empty_table("messages"),
        empty_table("events"),
        scores.astype({"event_id": object, "tenant_id": object, "is_bot": bool}),
        exclusions,
        window,
        segments=empty_table("segments"),
        tenants=tenants,
        channels=channels,
    )
