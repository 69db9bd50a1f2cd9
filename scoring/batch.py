"""Batch scoring: validated tables in, the scores table out."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd

from botfilter.settings import Settings
from contract.schema import SCORE_COLUMNS
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
    bot_score = np.empty(n, dtype=np.float64)
    is_bot = np.empty(n, dtype=bool)
    reasons = np.empty(n, dtype=object)

    def score(rows: np.ndarray, block: np.ndarray, sub: dict) -> tuple[np.ndarray, ScoredRows]:
        scored = model.score_block(block, sub["channel"], sub["type"], with_reasons=with_reasons)
        return rows, scored

    def collect(future: Future) -> None:
        rows, scored = future.result()
        bot_score[rows] = scored.bot_score
        is_bot[rows] = scored.is_bot
        reasons[rows] = scored.reasons

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-part") as scorer:
        pending: Future | None = None
        for rows in parts:
            sub = {name: values[rows] for name, values in cols.items()}
            block = feature_block(sub, enrichers)
            if pending is not None:
                collect(pending)  # at most one part waits, so memory stays bounded
            pending = scorer.submit(score, rows, block, sub)
        if pending is not None:
            collect(pending)
    return pd.DataFrame(
        {
            "event_id": cols["event_id"],
            "bot_score": bot_score,
            "is_bot": is_bot,
            "reasons": reasons,
            "model_version": model.version,
        },
        columns=list(SCORE_COLUMNS),
    )


def score_validated(
    validated, settings: Settings, model_uri: str | None = None, model: BotModel | None = None
) -> pd.DataFrame:
    """Score every clean event of a validated data directory with the champion (or ``model_uri``)."""
    from scoring.registry import load_model

    model = model or load_model(settings, model_uri)
    ctx = event_context(validated.messages, validated.events)
    return score_context(ctx, model, Enrichers.load())
