"""Batch scoring cuts the frame between tenants and overlaps the parts; the answer must not move."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from contract.validate import validate_tables
from features.definitions import FEATURE_NAMES
from features.pipeline import Enrichers, build_features, event_context
from scoring.batch import score_context, tenant_parts
from scoring.model import BotModel
from simulation.core import generate


def test_tenant_parts_keep_tenants_whole_and_rows_in_order():
    tenants = np.array(["b", "a", "b", None, "c"], dtype=object)
    parts = tenant_parts(tenants, part_events=2)
    assert [p.tolist() for p in parts] == [[0, 2], [1, 4], [3]]
    assert [p.tolist() for p in tenant_parts(tenants, part_events=100)] == [[0, 2, 1, 4, 3]]
    assert tenant_parts(np.array([], dtype=object)) == []


@pytest.fixture(scope="module")
def scored_world() -> tuple:
    validated = validate_tables(generate(tenants=3, days=2, seed=4))
    ctx = event_context(validated.messages, validated.events).reset_index(drop=True)
    enrichers = Enrichers.load()
    feats = build_features(ctx, enrichers)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1, "num_threads": 1},
        lgb.Dataset(feats.to_numpy(np.float64), (ctx["label"] == "bot").to_numpy().astype(int)),
        num_boost_round=10,
    )
    model = BotModel(booster, list(FEATURE_NAMES), (1.0, 0.0), {"default": 0.5}, "test/1", 1)
    return ctx, model, enrichers, feats


@pytest.mark.parametrize("part_events", [1, 50, 10**9])
def test_parts_score_exactly_as_the_whole_frame(scored_world, part_events):
    ctx, model, enrichers, feats = scored_world
    assert ctx["tenant_id"].nunique() == 3
    whole = model.score(ctx["event_id"], ctx["channel"], ctx["type"], feats)
    parted = score_context(ctx, model, enrichers, part_events=part_events)
    assert parted["event_id"].tolist() == ctx["event_id"].tolist()
    assert parted["tenant_id"].tolist() == ctx["tenant_id"].tolist()
    assert parted.drop(columns="tenant_id").equals(whole)
    assert parted["is_bot"].any() and not parted["is_bot"].all()
