"""Batch scoring: validated tables in, the scores table out."""

from __future__ import annotations

import pandas as pd

from botfilter.settings import Settings
from features.pipeline import Enrichers, build_features, event_context
from scoring.model import BotModel


def score_context(
    ctx: pd.DataFrame, model: BotModel, enrichers: Enrichers, with_reasons: bool = True
) -> pd.DataFrame:
    """Features and scores for an event-context frame, in its row order."""
    feats = build_features(ctx, enrichers)
    return model.score(
        ctx["event_id"], ctx["channel"], ctx["type"], feats, with_reasons=with_reasons
    )


def score_validated(
    validated, settings: Settings, model_uri: str | None = None, model: BotModel | None = None
) -> pd.DataFrame:
    """Score every clean event of a validated data directory with the champion (or ``model_uri``)."""
    from scoring.registry import load_model

    model = model or load_model(settings, model_uri)
    ctx = event_context(validated.messages, validated.events)
    return score_context(ctx, model, Enrichers.load())
