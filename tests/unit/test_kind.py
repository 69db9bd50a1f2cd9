"""The kind head: fitting, predicting only for bots, carried in the metadata, the old-model
fallback, the scores files' column and the report's breakdown."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from core.settings import Settings
from features.definitions import FEATURE_NAMES, LOOKAHEAD_FEATURES, MODEL_FEATURES
from jobs.metrics import MODULES, Window, compute_partitions, rollup
from scoring.kind import KindHead, kind_from_reasons
from scoring.model import BotModel
from scoring.scores_file import read_scores, write_scores
from training.kind import confusion_by_kind, evaluate_kind, fit_kind

# Bots answer within seconds of delivery; crawlers carry a crawler UA, scanners none.
BOT_COL, KIND_COL = "secs_since_delivery", "ua_crawler"


def _frame(delay: list[float], crawler: list[float]) -> pd.DataFrame:
    feats = pd.DataFrame(0.0, index=range(len(delay)), columns=list(FEATURE_NAMES))
    feats[BOT_COL] = delay
    feats[KIND_COL] = crawler
    return feats


@pytest.fixture(scope="module")
def prep() -> SimpleNamespace:
    """60 scanners, 60 crawlers, 60 people, sent one minute apart."""
    kind = ["security_scanner"] * 60 + ["crawler"] * 60 + [None] * 60
    feats = _frame([2.0] * 120 + [3600.0] * 60, [0.0] * 60 + [1.0] * 60 + [0.0] * 60)
    sent = pd.date_range("2024-03-01", periods=180, freq="min", tz="UTC")
    ctx = pd.DataFrame({"bot_kind": kind, "sent_at": sent, "channel": "email", "type": "click"})
    return SimpleNamespace(ctx=ctx, features=feats, y=np.array([k is not None for k in kind]),
                           weight=None)  # fmt: skip


@pytest.fixture(scope="module")
def model(prep) -> BotModel:
    X = prep.features[list(MODEL_FEATURES)].to_numpy(dtype=np.float64)
    params = {"objective": "binary", "num_leaves": 3, "min_data_in_leaf": 5, "verbose": -1}
    booster = lgb.train(
        params, lgb.Dataset(X, prep.y.astype(int), feature_name=list(MODEL_FEATURES)), 10
    )
    head = fit_kind(prep, Settings(threads=1))
    return BotModel(booster, list(MODEL_FEATURES), (1.0, 0.0), {"default": 0.5}, "t/1", 1, head)


def _score(model: BotModel, feats: pd.DataFrame, with_reasons: bool = True) -> pd.DataFrame:
    n = len(feats)
    ids = pd.Series([f"e{i}" for i in range(n)])
    return model.score(ids, pd.Series(["email"] * n), pd.Series(["click"] * n), feats, with_reasons)


def test_fit_kind_learns_the_labelled_kinds(model) -> None:
    head = model.kind
    assert head is not None and head.classes == ["security_scanner", "crawler"]
    # Causal: it names the kind of provisional answers too, which have no look-ahead features.
    assert not set(head.feature_names) & set(LOOKAHEAD_FEATURES)
    X = _frame([2.0, 2.0], [1.0, 0.0])[head.feature_names].to_numpy(dtype=np.float64)
    assert head.predict(X).tolist() == ["crawler", "security_scanner"]


def test_fit_kind_needs_two_labelled_kinds(prep) -> None:
    settings = Settings(threads=1)
    no_labels = SimpleNamespace(**{**vars(prep), "ctx": prep.ctx.drop(columns="bot_kind")})
    assert fit_kind(no_labels, settings) is None
    crawlers_out = np.arange(60, 120)  # the test split holds every crawler: one kind is left
    assert fit_kind(prep, settings, exclude=crawlers_out) is None


def test_fit_kind_learns_the_weak_labels_kinds_and_a_mixed_worlds_own(prep) -> None:
    """`train --labels weak` on labelled data: ``bot_kind`` stays the data's, to judge; the
    head must learn the weak labels' kinds (here one: no head), not the labels that judge."""
    from pathlib import Path

    from labelling.training import TRAIN_KIND
    from training.fit import Prepared, mix_in

    settings = Settings(threads=1)
    weak = prep.ctx.assign(**{TRAIN_KIND: ["security_scanner"] * 120 + [None] * 60})
    weak_prep = Prepared(weak, prep.features, prep.y, np.ones(180))
    assert fit_kind(weak_prep, settings) is None
    # a labelled world mixed in teaches its own kinds beside the weak ones
    mixed = mix_in(weak_prep, Prepared(prep.ctx, prep.features, prep.y), Path("/w"))
    assert mixed.ctx[TRAIN_KIND].iloc[180:].tolist() == prep.ctx["bot_kind"].tolist()
    head = fit_kind(mixed, settings)
    assert head is not None and head.classes == ["security_scanner", "crawler"]


def test_bot_kind_only_for_flagged_events(model) -> None:
    # person, scanner, crawler, a person with a crawler-like UA (not flagged: no kind)
    feats = _frame([3600.0, 2.0, 2.0, 3600.0], [0.0, 0.0, 1.0, 1.0])
    for with_reasons in (True, False):
        scores = _score(model, feats, with_reasons)
        assert scores["is_bot"].tolist() == [False, True, True, False]
        assert scores["bot_kind"].tolist() == ["", "security_scanner", "crawler", ""]
        assert list(scores.columns)[-1] == "bot_kind"


def test_the_head_travels_in_the_metadata(model, tmp_path: Path) -> None:
    model.booster.save_model(str(tmp_path / "model.lgb"))
    (tmp_path / "meta.json").write_text(json.dumps(model.metadata()))
    loaded = BotModel.from_files(tmp_path / "model.lgb", tmp_path / "meta.json", "t/1", 1)
    assert loaded.kind is not None and loaded.kind.classes == ["security_scanner", "crawler"]
    feats = _frame([2.0, 2.0, 3600.0], [1.0, 0.0, 0.0])
    assert _score(loaded, feats)["bot_kind"].tolist() == ["crawler", "security_scanner", ""]


def test_a_model_without_head_still_scores_with_the_top_reasons_kind(model, tmp_path) -> None:
    meta = {k: v for k, v in model.metadata().items() if k != "kind"}  # as registered before
    model.booster.save_model(str(tmp_path / "model.lgb"))
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    old = BotModel.from_files(tmp_path / "model.lgb", tmp_path / "meta.json", "t/0", 1)
    assert old.kind is None
    scores = _score(old, _frame([2.0, 2.0, 3600.0], [1.0, 0.0, 0.0]))
    expected = kind_from_reasons(scores["reasons"])
    expected[~scores["is_bot"].to_numpy()] = ""
    assert scores["bot_kind"].tolist() == expected.tolist()
    assert scores["bot_kind"].iloc[2] == "" and set(scores["bot_kind"].iloc[:2]) <= {
        "security_scanner",
        "crawler",
    }


def test_kind_from_reasons() -> None:
    reasons = [["ua_crawler", "x"], [], ["net_apple_relay"], ["secs_since_delivery"]]
    assert kind_from_reasons(reasons).tolist() == [
        "crawler",
        "security_scanner",
        "privacy_prefetch",
        "security_scanner",
    ]


def test_a_head_refuses_kinds_outside_the_contract(model) -> None:
    with pytest.raises(ValueError, match="bot"):
        KindHead(model.kind.booster, ["security_scanner", "bot"])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_scores_files_keep_bot_kind(tmp_path: Path, suffix: str) -> None:
    scores = pd.DataFrame(
        {
            "event_id": ["a", "b"],
            "bot_score": [0.1, 0.9],
            "is_bot": [False, True],
            "reasons": [[], ["ua_crawler"]],
            "model_version": ["t/1", "t/1"],
            "bot_kind": ["", "crawler"],
        }
    )
    path = tmp_path / f"scores{suffix}"
    write_scores(scores, path)
    back = read_scores(path)
    assert back["bot_kind"].tolist() == ["", "crawler"]
    assert list(back.columns) == list(scores.columns)
    # A file written before scores carried a kind reads with empty kinds.
    write_scores(scores.assign(bot_kind=["", ""]), path)
    old = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    old = old.drop(columns="bot_kind")
    old.to_parquet(path) if suffix == ".parquet" else old.to_csv(path, index=False)
    assert read_scores(path)["bot_kind"].tolist() == ["", ""]


def test_confusion_by_kind_counts_missed_bots_and_wrong_kinds() -> None:
    truth = np.array(["crawler", "crawler", "security_scanner", None, None], dtype=object)
    pred = np.array(["crawler", "", "crawler", "", "security_scanner"], dtype=object)
    got = confusion_by_kind(truth, pred)
    assert got["labels"] == ["security_scanner", "crawler", "person"]
    assert got["matrix"] == [[0, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert got["per_kind"]["crawler"] == {
        "n": 2,
        "recall": 0.5,
        "precision": 0.5,
        "right_kind_of_flagged": 1.0,
    }
    assert got["per_kind"]["security_scanner"]["right_kind_of_flagged"] == 0.0
    assert got["per_kind"]["person"] == {"n": 2, "recall": 0.5, "precision": 0.5}


def test_evaluate_kind_follows_scoring(model, prep) -> None:
    report = evaluate_kind(model, prep, np.arange(len(prep.ctx)))
    assert report is not None and report["head"] == "model"
    assert report["matrix"] == [[60, 0, 0], [0, 60, 0], [0, 0, 60]]


def test_report_breakdown_takes_the_scores_kind() -> None:
    messages = pd.DataFrame(
        {
            "message_id": ["m1"],
            "tenant_id": ["t1"],
            "channel": ["email"],
            "campaign_id": ["c1"],
            "automation_id": [None],
            "contact_id": ["k1"],
            "recipient_domain": ["a.com"],
            "sent_at": pd.to_datetime(["2024-03-10 08:00"], utc=True),
            "delivered_at": pd.to_datetime(["2024-03-10 08:01"], utc=True),
        }
    )
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "tenant_id": "t1",
            "message_id": "m1",
            "type": ["open", "click", "click"],
            "occurred_at": pd.to_datetime(["2024-03-10 08:01:02"] * 3, utc=True),
            "bot_kind": [None, "security_scanner", None],
        }
    )
    scores = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "bot_score": [0.9, 0.9, 0.9],
            "is_bot": True,
            "reasons": [["secs_since_delivery"], ["secs_since_delivery"], ["ua_crawler"]],
            "model_version": "t/1",
            # e1: the model's kind; e2: the model's kind over the label; e3: an old score
            "bot_kind": ["privacy_prefetch", "crawler", ""],
        }
    )
    as_of = pd.Timestamp("2024-03-31", tz="UTC")
    parts = compute_partitions(messages, events, scores, {}, Window.ending(as_of, 30))
    frame = rollup(parts.frames["bot_interactions"], MODULES["bot_interactions"])
    got = {r.bot_kind: (r.bot_opens, r.bot_clicks) for r in frame.itertuples()}
    assert got == {"privacy_prefetch": (1, 0), "crawler": (0, 1), "reason:ua_crawler": (0, 1)}


def test_a_kind_never_seen_on_a_channel_is_never_given_there(model) -> None:
    head = model.kind
    assert head.channel_kinds == {"email": ["security_scanner", "crawler"]}
    sms_crawlers_only = KindHead(head.booster, head.classes, {"sms": ["crawler"]}, 1)
    X = _frame([2.0, 2.0, 2.0], [0.0, 0.0, 0.0])[head.feature_names].to_numpy(dtype=np.float64)
    channel = np.array(["sms", "email", "whatsapp"], dtype=object)
    assert sms_crawlers_only.predict(X, channel).tolist() == [
        "crawler",
        "security_scanner",
        "security_scanner",
    ]
    back = KindHead.from_metadata(sms_crawlers_only.metadata(), 1)
    assert back is not None and back.channel_kinds == {"sms": ["crawler"]}


def test_gather_takes_the_head_features_of_some_columns_as_rows() -> None:
    """The kind head's matrix: out[i, j] = block[fmap[j], cols[i]], float64, NaN kept."""
    from scoring.kind import _gather

    block = np.arange(12, dtype=np.float32).reshape(3, 4)  # 3 features x 4 events
    block[1, 2] = np.nan
    out = np.full((2, 2), -1.0)
    _gather(block, np.array([2, 1]), np.array([0, 2]), out)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[8.0, 4.0], [10.0, np.nan]])
