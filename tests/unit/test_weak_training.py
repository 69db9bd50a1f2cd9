"""Training on weak labels: rows no labelling function voted on carry no label."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.settings import Settings
from features.definitions import FEATURE_NAMES, LOOKAHEAD_FEATURES, MODEL_FEATURES
from training.evaluate import UA_LIST_FLAGS
from training.fit import Prepared, fit_model


def _prepared(n: int = 3000, seed: int = 0) -> Prepared:
    rng = np.random.default_rng(seed)
    feats = pd.DataFrame(
        rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32), columns=list(FEATURE_NAMES)
    )
    y = feats["secs_since_delivery"].to_numpy() < 0
    ctx = pd.DataFrame(
        {
            "sent_at": pd.Timestamp("2026-10-01", tz="UTC")
            + pd.to_timedelta(np.arange(n), unit="min"),
            "channel": "email",
            "type": "click",
        }
    )
    # A third of the rows were left unlabelled: their "label" is the prior (human), weight 0,
    # and half of them are in truth bots that look like the labelled bots.
    weight = np.ones(n)
    unlabelled = rng.random(n) < 0.33
    weight[unlabelled] = 0.0
    y = np.where(unlabelled, False, y)
    return Prepared(ctx, feats, y, weight)


def test_unlabelled_rows_neither_set_thresholds_nor_count_in_the_test(tmp_path) -> None:
    prep = _prepared()
    model, info = fit_model(prep, Settings(home=tmp_path))
    te = info.test_idx
    assert len(te) and (prep.weight[te] > 0).all()
    assert sum(info.split.values()) == int((prep.weight > 0).sum())
    # The labelled bots are separable: with the unlabelled rows out, the cut sits low enough
    # to catch nearly all of them (with them in, bot-like "humans" pushed it up).
    feats = prep.features.iloc[te]
    proba = model.predict_proba(feats)
    flagged = proba >= model.thresholds["email:click"]
    assert flagged[prep.y[te]].mean() > 0.95
    # A causal head is fitted beside it for answers given before the look-ahead window passed.
    assert model.provisional is not None
    assert model.provisional.feature_names == [
        n for n in MODEL_FEATURES if n not in LOOKAHEAD_FEATURES
    ]
    assert set(LOOKAHEAD_FEATURES) <= set(model.feature_names)
    assert {f"provisional.{k}" for k in model.provisional.thresholds} <= set(info.thresholds_how)


def test_a_label_file_with_numeric_ids_or_repeats_is_read_or_refused_in_one_line(tmp_path):
    """Integer ids (a Parquet file keeps them so) and an event labelled twice were internal
    errors of the merge (an audit): ids are read as text, a repeat is one line."""
    import pytest

    from core.errors import BotfilterError
    from labelling.training import read_labels

    path = tmp_path / "labels.parquet"
    pd.DataFrame(
        {"event_id": [7, 8], "tenant_id": ["t1", "t1"], "label_bot_probability": [0.9, 0.1]}
    ).to_parquet(path)
    got = read_labels(path)
    assert got["event_id"].tolist() == ["7", "8"] and got["tenant_id"].tolist() == ["t1", "t1"]
    pd.DataFrame(
        {"event_id": ["e1", "e1"], "tenant_id": ["t1", "t1"], "label_bot_probability": [0.9, 0.1]}
    ).to_parquet(path)
    with pytest.raises(
        BotfilterError, match="event 'e1' of tenant 't1' is labelled more than once"
    ):
        read_labels(path)


def test_a_label_files_events_without_a_vote_are_left_out_as_with_weak(tmp_path) -> None:
    """botfilter label's file gives an event no function voted on the label model's prior;
    --labels FILE trained on it (weight 0.81 on average in the audit, all of them people)
    where --labels weak leaves it out."""
    from labelling.training import apply_weak_labels, read_labels

    path = tmp_path / "labels.parquet"
    pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "tenant_id": ["t1"] * 3,
            "label_bot_probability": [0.97, 0.95, 0.02],
            "lf_honeypot": [1, -1, -1],
            "lf_human_open": [-1, -1, 0],
        }
    ).to_parquet(path)
    assert read_labels(path)["covered"].tolist() == [True, False, True]
    ctx = pd.DataFrame({"event_id": ["e1", "e2", "e3"], "tenant_id": ["t1"] * 3})
    feats = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    _, _, y, weight, _ = apply_weak_labels(ctx, feats, path)
    assert y.tolist() == [True, True, False]
    assert weight.tolist() == [0.94, 0.0, 0.96]
    # a file without votes: every row it holds is a label
    pd.read_parquet(path)[["event_id", "tenant_id", "label_bot_probability"]].to_parquet(path)
    assert (apply_weak_labels(ctx, feats, path)[3] > 0).all()


def _label_file(path, proba: list[float], votes: list[int]) -> None:
    n = len(proba)
    pd.DataFrame(
        {
            "event_id": [f"e{i + 1}" for i in range(n)],
            "tenant_id": ["t1"] * n,
            "label_bot_probability": proba,
            "lf_honeypot": votes,
        }
    ).to_parquet(path)


def test_weak_labels_train_while_the_datas_own_labels_judge(tmp_path) -> None:
    """The weak labels overwrote the data's own in ``ctx``: the test report and the gate judged
    a weak-label model, and the champion beside it, on the labels it was trained to reproduce
    (a worse model displaced a better champion). Now they only give ``y`` and the weights."""
    from labelling import training as weak
    from labelling.training import apply_weak_labels

    path = tmp_path / "labels.parquet"
    # e1 bot, e2 no vote (weight 0), e3 person, e4 too unsure (confidence 0.1): e5 not in it
    _label_file(path, [0.97, 0.95, 0.02, 0.55], [1, -1, 0, 1])
    ctx = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4", "e5"],
            "tenant_id": ["t1"] * 5,
            "label": ["bot", "human", "human", "bot", "bot"],
            "bot_kind": ["crawler", None, None, "security_scanner", "crawler"],
            "family": ["crawler", "person", "person", "scanner", "crawler"],
        }
    )
    feats = pd.DataFrame({"x": np.arange(5.0)})
    out, _, y, weight, info = apply_weak_labels(ctx, feats, path)
    assert y.tolist() == [True, True, False, True]
    assert weight.tolist() == [0.94, 0.0, 0.96, 0.0]
    assert out["label"].tolist() == ["bot", "human", "human", "bot"]  # the data's own
    assert out["bot_kind"].tolist() == ["crawler", None, None, "security_scanner"]
    assert out["family"].tolist() == ["crawler", "person", "person", "scanner"]
    assert info["judged_on"] == "data labels"
    assert out[weak.TRAIN_KIND].tolist() == ["weak", "weak", None, "weak"]  # the kind head's
    assert info["unlabelled_events_left_out"] == 1
    assert (info["events_without_a_vote"], info["events_too_unsure"]) == (1, 1)


def test_without_labels_of_their_own_weak_labels_judge_and_name_no_family(tmp_path) -> None:
    """An event without a label of its own: the weak labels judge. The simulator's family tag
    stays out of that report: mixed with weak labels, it listed bot families (rescan,
    scanner) under "People flagged as bots, per family"."""
    from labelling.training import apply_weak_labels
    from training.evaluate import evaluation_report

    path = tmp_path / "labels.parquet"
    _label_file(path, [0.97, 0.02], [1, 0])
    ctx = pd.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "tenant_id": ["t1"] * 2,
            "label": ["bot", None],
            "bot_kind": ["crawler", None],
            "family": ["scanner", "rescan"],
        }
    )
    out, _, _, _, info = apply_weak_labels(ctx, pd.DataFrame({"x": [0.0, 1.0]}), path)
    assert out["label"].tolist() == ["bot", "human"]
    assert out["bot_kind"].tolist() == ["weak", None]
    frame = out.assign(
        channel="email", type="click", campaign_id=None, delivered_at=None, message_id="m"
    )
    flags = pd.DataFrame(0, index=range(2), columns=["ua_mail_proxy", *UA_LIST_FLAGS])
    report = evaluation_report(frame, flags, np.array([0.9, 0.1]), np.array([True, False]))
    assert report.fpr_by_family is None and report.recall_by_family is None
    assert "family" not in out.columns
    assert info["judged_on"] == "weak labels"
