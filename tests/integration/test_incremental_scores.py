"""Incremental scoring in the batch job equals scoring everything at once (real model, real store)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract.validate import validate_tables
from core.settings import Settings
from features.pipeline import Enrichers, event_context
from jobs.recompute import RecomputeOptions, recompute
from jobs.store import Store
from scoring.batch import score_context
from simulation import generate
from training.fit import fit_model, prepare

pytestmark = pytest.mark.integration


def test_new_events_scored_with_full_message_history(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    enrichers = Enrichers.load()
    model, _ = fit_model(
        prepare(validate_tables(generate(tenants=1, days=4, seed=21)), enrichers), settings
    )
    model.version = "test/1"

    def scorer(tables) -> pd.DataFrame:
        return score_context(event_context(tables.messages, tables.events), model, enrichers)

    world = validate_tables(generate(tenants=1, days=6, seed=22))
    events = world.events.sort_values(["occurred_at", "event_id"])
    as_of = events["occurred_at"].max() + pd.Timedelta(seconds=1)
    # the first run sees 70% of the events; the second one all, so only the rest is scored anew
    cut = events["occurred_at"].iloc[int(len(events) * 0.7)]
    early = validate_tables(
        {"messages": world.messages, "events": events[events["occurred_at"] < cut]}
    )
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    options = RecomputeOptions(as_of=as_of, scorer=scorer, model_version=model.version)
    recompute(store, settings, early, options)
    second = recompute(store, settings, world, options)
    assert second.scores_source == "store+scored"

    tenants = sorted(world.messages["tenant_id"].unique())
    stored = store.load_scores(tenants, model.version, reasons=True).set_index("event_id")
    full = scorer(world).set_index("event_id")
    late = events.loc[events["occurred_at"] >= cut, "event_id"]
    # a late event on an old message must see that message's early history
    assert (
        world.events.loc[world.events["event_id"].isin(late), "message_id"]
        .isin(world.events.loc[~world.events["event_id"].isin(late), "message_id"])
        .any()
    )
    common = full.index.intersection(stored.index)
    assert set(late) <= set(common)
    np.testing.assert_allclose(
        stored.loc[common, "bot_score"], full.loc[common, "bot_score"], rtol=0, atol=1e-12
    )
    assert (stored.loc[common, "is_bot"] == full.loc[common, "is_bot"]).all()
