"""Batch scoring: validated tables in, the scores table out."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from botfilter.settings import Settings
from contract.report import Report
from features.pipeline import Enrichers, context_arrays, event_context, factorize, feature_block
from scoring.model import BotModel, ScoredRows

# Tenants are packed into parts of about this many events. Features never look across tenants,
# so parts are independent: while one part is scored (compiled code, no GIL), the next part's
# features are built, and the two stages share the cores instead of taking turns.
PART_EVENTS = 150_000


def tenant_parts(tenant_id: np.ndarray, part_events: int = PART_EVENTS) -> list[np.ndarray]:
    """Row positions grouped into parts of whole tenants, each about ``part_events`` rows.

    A tenant larger than ``part_events`` is a part of its own; rows keep their relative order.
    """
    codes, uniques = factorize(np.asarray(tenant_id, dtype=object))
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
    cols = context_arrays(ctx)
    n = len(ctx)
    parts = tenant_parts(cols["tenant_id"], part_events) if n else []
    out = ScoredRows(np.empty(n), np.empty(n, dtype=bool), np.empty(n, dtype=object))

    def collect(rows: np.ndarray, future: Future[ScoredRows]) -> None:
        scored = future.result()
        out.bot_score[rows] = scored.bot_score
        out.is_bot[rows] = scored.is_bot
        out.reasons[rows] = scored.reasons

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-part") as scorer:
        pending: tuple[np.ndarray, Future[ScoredRows]] | None = None
        for rows in parts:
            sub = {name: values[rows] for name, values in cols.items()}
            block = feature_block(sub, enrichers)
            if pending is not None:
                collect(*pending)  # at most one part waits, so memory stays bounded
            future = scorer.submit(
                model.score_block, block, sub["channel"], sub["type"], with_reasons=with_reasons
            )
            pending = (rows, future)
        if pending is not None:
            collect(*pending)
    return out.table(cols["event_id"], model.version)


def score_validated(
    validated, settings: Settings, model_uri: str | None = None, model: BotModel | None = None
) -> pd.DataFrame:
    """Score every clean event of a validated data directory with the champion (or ``model_uri``)."""
    from scoring.registry import load_model

    model = model or load_model(settings, model_uri)
    ctx = event_context(validated.messages, validated.events)
    return score_context(ctx, model, Enrichers.load())


@dataclass
class ScoreRun:
    """What :func:`score_data_dir` did: the merged validation counts and the scores written."""

    report: Report
    events: int = 0
    bots: int = 0
    model_version: str = "-"


def score_data_dir(
    data_dir: Path,
    out: Path,
    settings: Settings,
    model_uri: str | None = None,
    model: BotModel | None = None,
    part_events: int | None = None,
    on_part: Callable[[int], None] | None = None,
) -> ScoreRun:
    """Validate and score a data directory part by part (whole tenants), writing as it goes.

    The scores are those of :func:`score_validated` on the whole directory, in the order of the
    parts (the file's order when it is grouped by tenant); memory follows the largest part, not
    the file. ``on_part`` is called with each part's event count.
    """
    from contract.parts import PART_EVENTS, iter_raw_parts, merge_reports
    from contract.validate import validate_raw
    from scoring.io import ScoresWriter
    from scoring.registry import load_model

    writer = ScoresWriter(out)  # checks the extension before any work
    model = model or load_model(settings, model_uri)
    enrichers = Enrichers.load()
    reports: list[Report] = []
    run = ScoreRun(report=Report({}))
    with writer:
        for raws in iter_raw_parts(data_dir, part_events or PART_EVENTS):
            validated = validate_raw(raws)
            del raws
            reports.append(validated.report)
            ctx = event_context(validated.messages, validated.events)
            del validated
            scores = score_context(ctx, model, enrichers)
            del ctx
            writer.write(scores)
            run.events += len(scores)
            run.bots += int(scores["is_bot"].sum())
            if len(scores):
                run.model_version = str(scores["model_version"].iat[0])
            if on_part is not None:
                on_part(len(scores))
    run.report = merge_reports(reports)
    return run
