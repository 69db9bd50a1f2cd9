"""Batch scoring: validated tables in, the scores table out; and the worker processes' side of
``botfilter score`` (:mod:`scoring.stream` is the side that reads the files and writes)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract.parts import SharedTable, unshare_raw, write_ipc
from contract.schema import EVENTS, MESSAGE_CONTEXT
from contract.validate import CODED, validate_raw_arrow
from features.coded import Coded, as_objects, rows_of
from features.pipeline import (
    CONTEXT_COLUMNS,
    Enrichers,
    context_arrays,
    context_arrays_arrow,
    event_context,
    factorize,
    feature_block,
    warm_up,
)
from scoring.model import BotModel, ScoredRows, import_lightgbm_lean
from scoring.registry import load_model
from scoring.stream import PartScores, ShippedModel, give_back_memory

if TYPE_CHECKING:  # annotations only: the workers' fork server never imports pydantic (0.15 s)
    from core.settings import Settings

# Tenants are packed into parts of about this many events. Features never look across tenants,
# so parts are independent: while one part is scored (compiled code, no GIL), the next part's
# features are built, and the two stages share the cores instead of taking turns.
PART_EVENTS = 150_000
# What scoring reads of a part's clean tables: the events' context columns, and of each message
# only its context (validation says which message an event names). Validation builds Python
# objects of no other column (url and the training labels of events, the messages' own ids,
# segments).
SCORED_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": tuple(c for c in EVENTS.names if c in CONTEXT_COLUMNS),
    "messages": tuple(c for c in MESSAGE_CONTEXT if c not in ("tenant_id", "message_id")),
    "segments": (),  # validated and counted, never scored
}


def tenant_parts(tenant_id: np.ndarray | Coded, part_events: int = PART_EVENTS) -> list[np.ndarray]:
    """Row positions grouped into parts of whole tenants, each about ``part_events`` rows.

    A tenant larger than ``part_events`` is a part of its own; rows keep their relative order.
    """
    plain = tenant_id if isinstance(tenant_id, Coded) else np.asarray(tenant_id, dtype=object)
    codes, uniques = factorize(plain)
    codes[codes < 0] = len(uniques)  # a missing tenant is one tenant of its own
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=len(uniques) + 1)
    ends = np.cumsum(sizes)
    parts, start, filled = [], 0, 0
    for end, size in zip(ends, sizes, strict=True):
        filled += size
        if filled >= part_events:
            parts.append(order[start:end])
            start, filled = end, 0
    if start < len(order):
        parts.append(order[start:])
    return parts


def _rows_index(rows: np.ndarray) -> np.ndarray | slice:
    """``rows`` as a slice when they are one ascending run (a frame grouped by tenant, as
    exports and the parts of ``botfilter score`` are): a view instead of a copy of every column."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and bool((np.diff(rows) == 1).all()):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def score_context(
    ctx: pd.DataFrame,
    model: BotModel,
    enrichers: Enrichers,
    with_reasons: bool = True,
    part_events: int = PART_EVENTS,
) -> pd.DataFrame:
    """Features and scores for an event-context frame, in its row order.

    Identical to building the features of the whole frame and scoring them in one call (a
    tested invariant): the frame is only cut between tenants.
    """
    cols, out = _score_rows(ctx, model, enrichers, with_reasons, part_events)
    # tenant_id too: an event id is unique only within its tenant (PRODUCT.md).
    return out.table(cols["event_id"], model.version, cols["tenant_id"])


def score_context_arrow(ctx: pd.DataFrame, model: BotModel, enrichers: Enrichers) -> pa.Table:
    """:func:`score_context` as the Arrow table a scores file holds (``tenant_id`` second)."""
    return score_arrays_arrow(context_arrays(ctx), model, enrichers)


def score_arrays_arrow(cols: dict, model: BotModel, enrichers: Enrichers) -> pa.Table:
    """The scores of context columns (:func:`features.pipeline.context_arrays` or
    ``context_arrays_arrow``) as the Arrow table a scores file holds (``tenant_id`` second),
    built from the scored arrays without a pandas frame in between."""
    out = _score_cols(cols, model, enrichers, True, PART_EVENTS)
    return out.arrow_table(cols["event_id"], model.version, as_objects(cols["tenant_id"]))


def _score_rows(
    ctx: pd.DataFrame, model: BotModel, enrichers: Enrichers, with_reasons: bool, part_events: int
) -> tuple[dict[str, np.ndarray], ScoredRows]:
    """The context's columns and their scores (the body of :func:`score_context`)."""
    cols = context_arrays(ctx)
    return cols, _score_cols(cols, model, enrichers, with_reasons, part_events)


def _score_cols(
    cols: dict, model: BotModel, enrichers: Enrichers, with_reasons: bool, part_events: int
) -> ScoredRows:
    """Scores of context columns in their row order, part by part (whole tenants)."""
    n = len(cols["event_id"])
    parts = tenant_parts(cols["tenant_id"], part_events) if n else []
    out = ScoredRows.empty(n)

    def collect(rows: np.ndarray, future: Future[ScoredRows]) -> None:
        out.put(rows, future.result())

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-part") as scorer:
        pending: tuple[np.ndarray, Future[ScoredRows]] | None = None
        for rows in parts:
            sub = {name: rows_of(values, _rows_index(rows)) for name, values in cols.items()}
            block = feature_block(sub, enrichers)
            if pending is not None:
                collect(*pending)  # at most one part waits, so memory stays bounded
            channel, event_type = as_objects(sub["channel"]), as_objects(sub["type"])
            future = scorer.submit(
                model.score_block, block, channel, event_type, with_reasons=with_reasons
            )
            pending = (rows, future)
        if pending is not None:
            collect(*pending)
    return out


def score_validated(
    validated,
    settings: Settings,
    model_uri: str | None = None,
    model: BotModel | None = None,
    enrichers: Enrichers | None = None,
) -> pd.DataFrame:
    """Score every clean event of a validated data directory with the champion (or ``model_uri``)."""
    model = model or load_model(settings, model_uri)
    ctx = event_context(validated.messages, validated.events)
    return score_context(ctx, model, enrichers or Enrichers.load())


def score_part(raws: dict, model: BotModel, enrichers: Enrichers) -> PartScores:
    """Validate and score one part's raw tables (whole tenants); its scores as an Arrow table."""
    # Arrow from the files to the features: text reaches them as codes (features.coded)
    validated = validate_raw_arrow(raws, referenced_only=True, columns=SCORED_COLUMNS)
    del raws
    assert validated.event_messages is not None  # given with referenced_only
    tables = validated.tables
    cols = context_arrays_arrow(tables["events"], tables["messages"], validated.event_messages)
    report = validated.report
    del validated, tables
    table = score_arrays_arrow(cols, model, enrichers)
    del cols  # the rows carry tenant_id: event ids are unique within a tenant only
    return PartScores(table, report, table.num_rows, pc.sum(table["is_bot"]).as_py() or 0)


# --- worker processes (started by scoring.workers) ----------------------------------------------

_WORKER: dict = {}  # per worker process: the enrichers, then the model of the first part


def warm_worker() -> None:
    """Import LightGBM (without scikit-learn), build this process's enrichers (IP ranges,
    User-Agent patterns: about a second) and load the compiled feature kernels (about 0.6 s),
    once: the fork server does it before forking the workers (:mod:`scoring.warm`), which then
    find them done."""
    if "enrichers" not in _WORKER:
        import_lightgbm_lean()  # a worker only scores: every worker needs it for its model
        enrichers = Enrichers.load()
        _ = enrichers.ip, enrichers.ua  # cached properties: built here, not at the first part
        warm_up(enrichers)
        _WORKER["enrichers"] = enrichers


def load_shipped(shipped: ShippedModel) -> None:
    """This worker's model (and enrichers), loaded once per shipped model."""
    if _WORKER.get("shipped") != shipped:
        warm_worker()  # done by the fork server unless its warm-up failed
        model = BotModel.from_files(
            Path(shipped.model_file), Path(shipped.metadata_file), shipped.version, shipped.threads
        )
        if shipped.model_id is not None:
            model.model_id = shipped.model_id
        if shipped.compiled_cache:
            model.compile(Path(shipped.compiled_cache))
        _WORKER.update(shipped=shipped, model=model)


def score_shipped_part(
    shipped: ShippedModel, shared: dict[str, SharedTable], scores_path: str
) -> PartScores:
    """Score a shared part; the scores go back the way the part came, as a file in memory."""
    load_shipped(shipped)
    raws = unshare_raw(shared, keep=CODED)  # validation takes those as dictionaries
    scored = score_part(raws, _WORKER["model"], _WORKER["enrichers"])
    assert isinstance(scored.scores, pa.Table)  # score_part's scores are a table
    write_ipc(scored.scores, scores_path)
    give_back_memory()
    return replace(scored, scores=scores_path)
