"""Spark engine pieces that need no Spark: clean-table transport, model shipping, settings."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from contract import validate
from jobs.spark.engine import ModelPayload, _local_cores, _worker_model, context_columns
from jobs.spark.tables import (
    _named_messages,
    arrow_to_clean_pandas,
    as_uri_or_path,
    clean_ddl,
    clean_to_arrow,
)
from scoring.model import BotModel


def _clean_events() -> pd.DataFrame:
    raw = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "tenant_id": ["t", "t", "t"],
            "message_id": ["m1", "m1", "m2"],
            "type": ["open", "click", "click"],
            "occurred_at": [
                "2026-01-01T00:00:00.123456789Z",  # nanoseconds: Spark's own timestamps lose them
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:02Z",
            ],
            "link_position": [None, "1", "0"],
            "is_hidden_link": [None, "true", "false"],
            "asn": [None, "15169", None],
        }
    )
    messages = pd.DataFrame(
        {
            "message_id": ["m1", "m2"],
            "tenant_id": ["t", "t"],
            "channel": ["email", "email"],
            "contact_id": ["c1", "c2"],
            "sent_at": ["2025-12-31T23:00:00Z"] * 2,
            "link_count": ["3", "2"],
        }
    )
    return validate.validate_tables({"messages": messages, "events": raw}).events


def test_clean_tables_cross_spark_without_loss() -> None:
    events = _clean_events()
    table = clean_to_arrow("events", events)
    assert table.column("occurred_at").to_pylist()[0] == 1767225600123456789
    back = arrow_to_clean_pandas("events", table)
    pd.testing.assert_frame_equal(back, events[back.columns.tolist()])
    assert back["link_position"].dtype == "Int64" and back["is_hidden_link"].dtype == "boolean"
    assert "`occurred_at` bigint" in clean_ddl("events")


def test_context_columns_have_no_duplicates() -> None:
    columns = context_columns()
    assert len(columns) == len(set(columns))
    assert columns[:3] == ["event_id", "tenant_id", "message_id"]
    assert "channel" in columns and "sent_at" in columns


@pytest.mark.parametrize(
    ("master", "cores"), [("local", 1), ("local[2]", 2), ("local[3,2]", 3), ("yarn", None)]
)
def test_local_cores(master: str, cores: int | None) -> None:
    assert _local_cores(master) == cores


def test_model_payload_rebuilds_the_same_model() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7},
        lgb.Dataset(X, y, feature_name=["a", "b", "c"]),
        num_boost_round=20,
    )
    model = BotModel(booster, ["a", "b", "c"], (1.5, -0.2), {"email:open": 0.7}, "name/4")
    payload = ModelPayload.of(model)
    assert payload.compiled is False and payload.version == "name/4"
    rebuilt = _worker_model(payload)
    assert _worker_model(payload) is rebuilt  # built once per worker process
    frame = pd.DataFrame(X[:50], columns=["a", "b", "c"])
    np.testing.assert_array_equal(rebuilt.predict_proba(frame), model.predict_proba(frame))
    assert rebuilt.thresholds == model.thresholds and rebuilt.calibration == model.calibration


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (Path("s3a://bucket/day/x"), "s3a://bucket/day/x"),  # pathlib collapsed the "//"
        ("s3a://bucket/day", "s3a://bucket/day"),
        (Path("file:///tmp/world"), "file:///tmp/world"),
        (Path("hdfs://nn:8020/d"), "hdfs://nn:8020/d"),
        ("/tmp/world", "/tmp/world"),
        ("relative/world", "relative/world"),
    ],
)
def test_uris_survive_pathlib(given: object, expected: str) -> None:
    assert as_uri_or_path(given) == expected


def test_named_messages_match_tenant_and_message_id() -> None:
    """A message counts as named only by an event of its own tenant (ids repeat across tenants)."""
    import pyarrow as pa

    messages = pa.table(
        {
            "tenant_id": ["t", "t", "u", "u"],
            "message_id": ["m1", "m2", "m1", "m3"],
            "x": [1, 2, 3, 4],
        }
    )
    events = pa.table({"tenant_id": ["t", "u", "t"], "message_id": ["m1", "m3", "m1"]})
    assert _named_messages(messages, events).to_pylist() == [True, False, False, True]
    assert _named_messages(messages, events.slice(0, 0)).to_pylist() == [False] * 4
