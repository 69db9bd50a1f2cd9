"""Fixtures shared by unit tests of several modules: the serving world and its runtime, the
labelling functions' event frames, a small test booster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from contract.schema import MESSAGE_CONTEXT
from contract.validate import validate_tables
from core.settings import Settings
from core.tokens import TokenCache, TokenStore
from features.definitions import FEATURE_NAMES, LONGEST_WINDOW_S, LOOKAHEAD_FEATURES
from features.pipeline import Enrichers, build_features, event_context
from scoring.batch import score_context
from scoring.model import BotModel
from serving import api
from serving.client import api_events
from serving.runtime import Runtime
from serving.state import MemoryState
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
    # The causal head that answers while an event's look-ahead window is open, as trained
    # models have (training.fit): a model of its own, so the tests see which one answered.
    causal = [n for n in FEATURE_NAMES if n not in LOOKAHEAD_FEATURES]
    early = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 2, "num_threads": 1},
        lgb.Dataset(feats[causal].to_numpy(np.float64), y),
        num_boost_round=10,
    )
    model.provisional = BotModel(
        lgb.Booster(model_str=early.model_to_string()), causal, (1.0, 0.0), {"default": 0.5}
    )
    batch = score_context(ctx, model, enrichers).set_index("event_id")
    items = api_events(validated.messages, validated.events)
    return {"model": model, "enrichers": enrichers, "batch": batch, "items": items, "ctx": ctx}


def _memory_state() -> MemoryState:
    return MemoryState(history_s=35 * 86_400, burst_s=2 * LONGEST_WINDOW_S)


def _runtime(world: dict, store: TokenStore | None = None, **settings: object) -> Runtime:
    versions = iter(["test/2", "test/3"])

    def loader(_: Settings) -> BotModel:
        m = world["model"]
        return BotModel(
            m.booster,
            m.feature_names,
            m.calibration,
            m.thresholds,
            next(versions),
            1,
            provisional=m.provisional,
        )

    s = Settings(max_batch_events=100, **settings)
    static = s.api_token.get_secret_value() if s.api_token else None
    auth = TokenCache(store, static=static)
    return Runtime(s, world["model"], world["enrichers"], _memory_state(), loader=loader, auth=auth)


def _client(runtime: Runtime | None) -> TestClient:
    app = api.Gate(api.build_app(lambda: runtime), runtime=lambda: runtime)
    return TestClient(app)


@pytest.fixture(scope="session")
def memory_state() -> Callable[[], MemoryState]:
    """Builds an empty in-process window state (35 days of history)."""
    return _memory_state


@pytest.fixture(scope="session")
def make_runtime() -> Callable[..., Runtime]:
    """Builds a runtime over the world's model (reloads give test/2, test/3), Settings overrides
    as keywords, tokens from ``store``."""
    return _runtime


@pytest.fixture(scope="session")
def make_client() -> Callable[[Runtime | None], TestClient]:
    """Builds an in-process HTTP client of the API over a runtime (None: not loaded yet)."""
    return _client


T0 = pd.Timestamp("2026-10-01T10:00:00Z")


def _frames(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Context and features of a few events; each row gives its context and feature overrides.

    Unset features are 0, except a plain person's defaults: delivered an hour ago, a current
    mobile-less browser (family 1, 1 version behind), nothing in any burst window.
    """
    ctx, feats = [], []
    for i, row in enumerate(rows):
        c = {
            "event_id": f"e{i}",
            "tenant_id": "t1",
            "message_id": row.get("message_id", f"m{i}"),
            "ip": row.get("ip", f"10.0.0.{i}"),
            "type": row.get("type", "click"),
            "occurred_at": T0 + pd.Timedelta(seconds=row.get("t", 0.0)),
            "link_position": row.get("link_position", 0),
            "is_hidden_link": row.get("is_hidden_link", False),
        }
        f = dict.fromkeys(FEATURE_NAMES, 0.0)
        f.update(
            secs_since_delivery=3600.0,
            ua_family=1.0,
            ua_versions_behind=1.0,
            http_method=0.0,
            is_click=1.0 if c["type"] == "click" else 0.0,
        )
        f.update(row.get("f", {}))
        ctx.append(c)
        feats.append(f)
    return pd.DataFrame(ctx), pd.DataFrame(feats)


@pytest.fixture(scope="session")
def event_frames() -> Callable[[list[dict]], tuple[pd.DataFrame, pd.DataFrame]]:
    """Builds the context and features of a few events (see ``_frames``), for the labelling
    functions and the estimates."""
    return _frames


def _train_booster(zero_as_missing: bool = False, n: int = 600, rounds: int = 20) -> lgb.Booster:
    """A small booster whose features have NaN (c) and zeros (d), named a-d."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    X[rng.random(n) < 0.1, 2] = np.nan
    X[: n // 12, 3] = 0.0
    y = ((X[:, 0] + np.nan_to_num(X[:, 2]) > 0.3) | (X[:, 3] == 0)).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "verbose": -1,
        "seed": 1,
        "min_data_in_leaf": 5,
        "zero_as_missing": zero_as_missing,
    }
    return lgb.train(
        params, lgb.Dataset(X, y, feature_name=["a", "b", "c", "d"]), num_boost_round=rounds
    )


@pytest.fixture(scope="session")
def train_booster() -> Callable[..., lgb.Booster]:
    """Trains the small a-d test booster (zero_as_missing, n rows, rounds)."""
    return _train_booster


# --- the contract's valid rows: an email, an SMS, a click on the email -------------------------

_MESSAGE = {
    "message_id": "m1",
    "tenant_id": "t1",
    "channel": "email",
    "campaign_id": "c1",
    "automation_id": None,
    "contact_id": "k1",
    "recipient_domain": "example.com",
    "sent_at": "2025-01-01T00:00:00Z",
    "delivered_at": "2025-01-01T00:00:05Z",
    "link_count": 3,
}
_SMS_MESSAGE = {
    **_MESSAGE,
    "message_id": "m2",
    "channel": "sms",
    "recipient_domain": None,
    "link_count": 1,
}
_EVENT = {
    "event_id": "e1",
    "tenant_id": "t1",
    "message_id": "m1",
    "type": "click",
    "occurred_at": "2025-01-01T00:01:00Z",
    "ip": "192.0.2.1",
    "user_agent": "Mozilla/5.0",
    "url": "https://shop.example/a",
    "link_position": 1,
    "is_hidden_link": False,
    "http_method": "GET",
    "asn": 64500,
}


@pytest.fixture
def message_row() -> dict[str, Any]:
    """A valid email message m1 of tenant t1, sent 2025-01-01T00:00:00Z with 3 links."""
    return dict(_MESSAGE)


@pytest.fixture
def sms_message_row() -> dict[str, Any]:
    """A valid SMS message m2 of tenant t1 with 1 link."""
    return dict(_SMS_MESSAGE)


@pytest.fixture
def event_row() -> dict[str, Any]:
    """A valid click e1 on message m1, a minute after it was sent."""
    return dict(_EVENT)


def _api_row(**change: Any) -> dict[str, Any]:
    context = {name: _MESSAGE[name] for name in MESSAGE_CONTEXT}
    return {**context, **_EVENT, **change}


@pytest.fixture(scope="session")
def api_row() -> Callable[..., dict[str, Any]]:
    """Builds the API's item for the click e1 (event and message context), changed by keywords."""
    return _api_row
