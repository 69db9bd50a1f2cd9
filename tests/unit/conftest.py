"""Fixtures shared by the serving tests."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from contract.validate import validate_tables
from features.definitions import FEATURE_NAMES
from features.pipeline import Enrichers, build_features, event_context
from scoring.batch import score_context
from scoring.model import BotModel
from serving.client import api_events
from simulation.core import generate


@pytest.fixture(scope="session")
def world() -> dict:
    """A tiny simulated world, a real LightGBM model trained on it and its batch scores."""
    tables = generate(tenants=1, days=2, seed=1)
    validated = validate_tables(tables)
    ctx = event_context(validated.messages, validated.events).reset_index(drop=True)
    enrichers = Enrichers.load()
    feats = build_features(ctx, enrichers)
    y = (ctx["label"] == "bot").to_numpy().astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1, "num_threads": 1},
        lgb.Dataset(feats[list(FEATURE_NAMES)].to_numpy(np.float64), y),
        num_boost_round=15,
    )
    booster = lgb.Booster(model_str=booster.model_to_string())
    model = BotModel(booster, list(FEATURE_NAMES), (1.0, 0.0), {"default": 0.5}, "test/1", 1)
    batch = score_context(ctx, model, enrichers).set_index("event_id")
    items = api_events(validated.messages, validated.events)
    return {"model": model, "enrichers": enrichers, "batch": batch, "items": items, "ctx": ctx}
