"""The model wrapper: contributions add up to LightGBM's raw score, thresholds, reasons."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.definitions import LOOKAHEAD_FEATURES
from features.pipeline import build_features
from scoring.explain import contributions, flatten, top_reasons
from scoring.model import BotModel, ScoredRows
from scoring.scores_file import scores_arrow_schema
from training.fit import (
    MIN_CUT,
    SECURITY_VENDOR_CLICK_CUT,
    choose_thresholds,
    pick_cut,
    select_thresholds,
    threshold_for_precision,
)


@pytest.fixture(scope="module")
def booster(train_booster) -> lgb.Booster:
    return train_booster()


def test_contributions_sum_to_raw_score(booster):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    X[::7, 2] = np.nan
    X[::5, 3] = 0.0
    trees = flatten(booster)
    contrib = contributions(trees, X)
    raw = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1) + trees.base, raw, rtol=0, atol=1e-9)
    assert np.abs(contrib[:, 0]).sum() > 0


def test_top_reasons_follow_contributions(booster):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 4))
    trees = flatten(booster)
    contrib = contributions(trees, X)
    toward_bot = rng.random(50) < 0.5
    got = top_reasons(trees, X, ["a", "b", "c", "d"], toward_bot)
    for row, want_bot, reasons in zip(contrib, toward_bot, got, strict=True):
        signed = row if want_bot else -row
        expected = [
            ["a", "b", "c", "d"][i] for i in np.argsort(-signed, kind="stable") if signed[i] > 0
        ][:3]
        assert reasons == expected
    only = top_reasons(trees, X, ["a", "b", "c", "d"], toward_bot, rows=np.array([3]))
    assert only[3] == got[3] and all(r == [] for i, r in enumerate(only) if i != 3)


def test_score_table_columns_and_thresholds(booster):
    model = BotModel(
        booster, ["a", "b", "c", "d"], (1.0, 0.0), {"default": 0.5, "email:click": 0.999}
    )
    feats = pd.DataFrame({"a": [3.0, 3.0], "b": [0.0, 0.0], "c": [1.0, 1.0], "d": [1.0, 1.0]})
    out = model.score(
        pd.Series(["e1", "e2"]), pd.Series(["email", "sms"]), pd.Series(["click", "click"]), feats
    )
    assert list(out.columns) == [
        "event_id",
        "bot_score",
        "is_bot",
        "reasons",
        "model_version",
        "bot_kind",
    ]
    p = float(out["bot_score"].iat[0])
    assert 0.5 < p < 0.999  # same score, different per-(channel, type) thresholds
    assert out["is_bot"].tolist() == [False, True]
    assert out["reasons"].iat[1][0] in {"a", "c"}
    # No kind head, and reasons that name no kind: the fallback kind for the bot only.
    assert out["bot_kind"].tolist() == ["", "security_scanner"]


@pytest.mark.parametrize("n", [4, 100])
def test_a_security_vendors_clicks_take_the_higher_cut(booster, n):
    """Issue 16: a click from a mail-security vendor's address may be a person's through its
    browser isolation; it takes the vendor cut, every other row its (channel, type) cut."""
    thresholds = {"default": 0.9, "email:click": 0.6, "email:click:security_vendor": 0.85}
    model = BotModel(booster, ["a", "b", "c", "d"], (1.0, 0.0), thresholds)
    rows = [("email", "click", True), ("email", "click", False), ("email", "open", True)]
    rows += [("sms", "click", True)]
    rows = [rows[i % 4] for i in range(n)]
    channel = np.array([r[0] for r in rows], dtype=object)
    event_type = np.array([r[1] for r in rows], dtype=object)
    vendor = np.array([r[2] for r in rows])
    want = {("email", "click", True): 0.85, ("email", "click", False): 0.6}
    got = model.threshold_for(channel, event_type, vendor).tolist()
    assert got == [want.get(r, 0.9) for r in rows]
    assert model.threshold_for(channel, event_type).tolist() == [
        0.6 if r[:2] == ("email", "click") else 0.9 for r in rows
    ]
    # scored through a block with the vendor feature, the same event is a bot or a person
    feats = pd.DataFrame(
        {
            "a": [3.0, 3.0],
            "b": [0.0] * 2,
            "c": [1.0] * 2,
            "d": [1.0] * 2,
            "net_security_vendor": [1, 0],
        }
    )
    p = float(model.predict_proba(feats[["a", "b", "c", "d"]])[0])
    model.thresholds = {
        "default": 0.5,
        "email:click": p - 0.01,
        "email:click:security_vendor": p + 0.01,
    }
    out = model.score(
        pd.Series(["e1", "e2"]), pd.Series(["email"] * 2), pd.Series(["click"] * 2), feats
    )
    assert out["is_bot"].tolist() == [False, True]
    ctx = pd.DataFrame({"channel": ["email"] * 2, "type": ["click"] * 2})
    assert model.flags(out["bot_score"].to_numpy(), ctx, feats).tolist() == [False, True]


def test_select_thresholds_raises_the_email_click_cut_for_security_vendors():
    ctx = pd.DataFrame({"channel": ["email"] * 4 + ["sms"] * 2, "type": ["click"] * 6})
    proba = np.array([0.9, 0.8, 0.3, 0.2, 0.99, 0.1])
    y = np.array([1, 1, 0, 0, 1, 0], bool)
    thresholds, how = select_thresholds(proba, y, ctx, 0.99, min_bots=2)
    assert thresholds["email:click"] == 0.5
    assert thresholds["email:click:security_vendor"] == SECURITY_VENDOR_CLICK_CUT == 0.85
    assert "browser isolation" in how["email:click:security_vendor"]["method"]


def test_threshold_for_precision_exact():
    proba = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0], bool)
    assert threshold_for_precision(proba, y, 0.99) == 0.9
    assert threshold_for_precision(proba, y, 0.75) == 0.7
    # recall is complete at 0.7: a lower cut that still meets 0.5 precision adds only false positives
    assert threshold_for_precision(proba, y, 0.5) == 0.7
    assert threshold_for_precision(proba, np.zeros(6, bool), 0.9) is None


def test_choose_thresholds_falls_back_for_small_groups():
    ctx = pd.DataFrame({"channel": ["email"] * 4 + ["sms"] * 2, "type": ["click"] * 6})
    proba = np.array([0.9, 0.8, 0.3, 0.2, 0.99, 0.1])
    y = np.array([1, 1, 0, 0, 1, 0], bool)
    th = choose_thresholds(proba, y, ctx, 0.99, min_bots=2)
    # the gap between the lowest bot (0.8) and the highest person (0.3) holds the calibrated 0.5
    assert th["email:click"] == 0.5
    assert th["sms:click"] == th["default"] == th["email:click"]


@pytest.mark.parametrize("n", [1, 7, 64, 65, 300])
def test_threshold_for_is_the_same_for_few_and_many_rows(booster, n):
    """Up to 64 rows take a dict per (channel, type), more two factorizes: the same cuts."""
    thresholds = {"default": 0.5, "email:click": 0.7, "sms:click": 0.9}
    model = BotModel(booster, ["a", "b", "c", "d"], (1.0, 0.0), thresholds)
    values = [
        ("email", "click"),
        ("sms", "click"),
        ("email", "open"),
        (None, "click"),
        ("sms", None),
        (np.nan, "open"),
        ("push", "click"),
    ]
    rows = [values[i % len(values)] for i in range(n)]
    channel = np.array([c for c, _ in rows], dtype=object)
    event_type = np.array([t for _, t in rows], dtype=object)
    expected = {("email", "click"): 0.7, ("sms", "click"): 0.9}
    want = [expected.get(r, 0.5) if isinstance(r[0], str) else 0.5 for r in rows]
    assert model.threshold_for(channel, event_type).tolist() == want


def test_pick_cut_never_below_half_and_says_why():
    """Bots down to 0.06 meet the precision target, but the cut is raised to the 0.5 floor."""
    proba = np.array([0.99, 0.95, 0.4, 0.06, 0.03, 0.01])
    y = np.array([1, 1, 1, 1, 0, 0], bool)
    assert threshold_for_precision(proba, y, 0.99) == 0.06
    choice = pick_cut(proba, y, 0.99)
    assert choice.cut == MIN_CUT == 0.5
    assert choice.method.endswith("raised to the 0.5 floor")
    assert choice.recall == 0.5 and choice.precision == 1.0


def test_pick_cut_sits_in_the_middle_of_a_wide_gap():
    """Lowest flagged bot 0.9, highest person 0.6: the cut is their log-odds midpoint."""
    proba = np.array([0.99, 0.9, 0.6, 0.1])
    y = np.array([1, 1, 0, 0], bool)
    choice = pick_cut(proba, y, 0.99)
    mid = 1 / (1 + np.exp(-(np.log(9) + np.log(1.5)) / 2))
    assert choice.cut == pytest.approx(mid) and 0.6 < choice.cut < 0.9
    assert choice.gap == (0.9, 0.6) and "middle of the gap" in choice.method


def test_pick_cut_takes_the_calibrated_half_when_the_gap_holds_it():
    """Lowest flagged bot 0.99, highest person 0.3: 0.5 lies in the gap and is the cut (the
    log-odds middle, 0.87, would leave shifted bots of 0.6-0.85 unflagged)."""
    proba = np.array([0.999, 0.99, 0.3, 0.1])
    y = np.array([1, 1, 0, 0], bool)
    choice = pick_cut(proba, y, 0.99)
    assert choice.cut == 0.5 and choice.gap == (0.99, 0.3)
    assert choice.method.endswith("the calibrated 0.5 inside the gap")


def test_pick_cut_gives_up_a_sliver_of_recall_for_a_higher_cut():
    """One straggler bot of 2,000 at 0.55 is left out: the cut stays above the bulk's gap."""
    proba = np.r_[np.full(1999, 0.99), 0.55, np.full(50, 0.01)]
    y = np.r_[np.ones(2000, bool), np.zeros(50, bool)]
    choice = pick_cut(proba, y, 0.99, slack=0.001)
    assert choice.cut > 0.55 and choice.recall == pytest.approx(1999 / 2000)
    assert "within recall slack" in choice.method


def test_select_thresholds_passes_its_recall_slack_to_every_cut():
    """The straggler bot at 0.55 is kept with no slack, left out with the default one."""
    proba = np.r_[np.full(1999, 0.99), 0.55, np.full(50, 0.01)]
    y = np.r_[np.ones(2000, bool), np.zeros(50, bool)]
    ctx = pd.DataFrame({"channel": ["email"] * len(y), "type": ["click"] * len(y)})
    slack, _ = select_thresholds(proba, y, ctx, 0.99)
    none, how = select_thresholds(proba, y, ctx, 0.99, slack=0.0)
    assert slack["default"] > 0.55 and slack["email:click"] > 0.55
    assert none["default"] <= 0.55 and none["email:click"] <= 0.55
    assert "best recall" in how["email:click"]["method"]


def test_select_thresholds_logs_how_each_cut_was_chosen():
    ctx = pd.DataFrame({"channel": ["email"] * 4 + ["sms"] * 2, "type": ["click"] * 6})
    proba = np.array([0.9, 0.8, 0.3, 0.2, 0.99, 0.1])
    y = np.array([1, 1, 0, 0, 1, 0], bool)
    thresholds, how = select_thresholds(proba, y, ctx, 0.99, min_bots=2)
    assert 0.5 <= thresholds["email:click"] < 0.8
    assert how["sms:click"]["method"] == "too few bots: the default cut"
    assert set(how) == set(thresholds)


def test_model_never_flags_below_half_even_with_a_lower_registered_cut(booster):
    """A model registered with a 0.06 cut (as an old training run chose) is held to 0.5."""
    model = BotModel(
        booster, ["a", "b", "c", "d"], (1.0, 0.0), {"default": 0.06, "email:click": 0.2}
    )
    for n in (3, 100):
        cuts = model.threshold_for(np.array(["email"] * n), np.array(["click"] * n))
        assert (cuts == 0.5).all()
    model.thresholds = {"default": 0.7}
    assert model.threshold_for(np.array(["sms"]), np.array(["click"]))[0] == 0.7


def _scored_rows(reasons: list[list[str]], kinds: list[str]) -> ScoredRows:
    """Rows whose equal reasons share one list, as score_block builds them."""
    shared: dict[tuple[str, ...], list[str]] = {}
    lists = np.empty(len(reasons), dtype=object)
    lists[:] = [shared.setdefault(tuple(r), r) for r in reasons]
    codes = pd.factorize(np.array(["|".join(r) for r in reasons], dtype=object))[0]
    n = len(reasons)
    return ScoredRows(
        np.linspace(0.0, 1.0, n),
        np.arange(n) % 2 == 1,
        lists,
        np.array(kinds, dtype=object),
        codes.astype(np.int64),
    )


@pytest.mark.parametrize("tenants", [["t1"] * 9 + ["t2"] * 9, ["t1", "t2", "t3"] * 6])
def test_arrow_table_is_the_frame_converted(tenants):
    """The scores file's Arrow table, built without the frame (a run of tenants and tenants
    interleaved; reasons repeated, empty and distinct) is exactly the frame's conversion."""
    reasons = [["a", "b"], [], ["a", "b"], ["c"], ["a", "b", "d"], []] * 3
    kinds = ["", "security_scanner", "", "crawler", "", "link_preview"] * 3
    scored = _scored_rows(reasons, kinds)
    ids = np.array([f"e{i}" for i in range(18)], dtype=object)
    tenant_ids = np.array(tenants, dtype=object)
    for tenant in (tenant_ids, None):
        frame = scored.table(ids, "bf/3", tenant)
        expected = pa.Table.from_pandas(
            frame, schema=scores_arrow_schema(tenant is not None), preserve_index=False
        )
        got = scored.arrow_table(ids, "bf/3", tenant)
        assert got.equals(expected)
        assert got.column("reasons").to_pylist() == reasons
        assert got.column("model_version").to_pylist() == ["bf/3"] * 18


def test_arrow_table_of_no_rows():
    empty = _scored_rows([], [])
    got = empty.arrow_table(np.empty(0, dtype=object), "bf/3", np.empty(0, dtype=object))
    assert got.num_rows == 0
    assert got.schema == scores_arrow_schema(True)


@pytest.mark.parametrize("share", [0.05, 0.3])  # a batch's few waiting rows; many of them
def test_rows_waiting_for_their_look_ahead_get_the_causal_heads_answer(world, share):
    """A row whose look-ahead features are missing (its window has not passed) is answered by
    the model's provisional head, every other row by the model itself; scores, reasons and
    kinds alike, through score_block, predict_proba and a round trip of the metadata."""
    model, ctx = world["model"], world["ctx"]
    feats = build_features(ctx, world["enrichers"])
    pending = feats[LOOKAHEAD_FEATURES[0]].isna().to_numpy()
    rng = np.random.default_rng(3)
    pending |= rng.random(len(feats)) < share  # and some more, as if their window were open
    feats.loc[pending, list(LOOKAHEAD_FEATURES)] = np.nan
    assert 0 < pending.sum() < len(feats)
    block = feats.to_numpy(np.float32).T.copy()
    ch, ty = ctx["channel"].to_numpy(), ctx["type"].to_numpy()
    got = model.score_block(block, ch, ty)
    alone = BotModel(model.booster, model.feature_names, model.calibration, model.thresholds)
    own = alone.score_block(block, ch, ty)
    early = model.provisional.score_block(block, ch, ty)
    for mask, want in ((~pending, own), (pending, early)):
        np.testing.assert_array_equal(got.bot_score[mask], want.bot_score[mask])
        np.testing.assert_array_equal(got.is_bot[mask], want.is_bot[mask])
        assert list(got.reasons[mask]) == list(want.reasons[mask])
    assert not {r for rs in got.reasons[pending] for r in rs} & set(LOOKAHEAD_FEATURES)
    np.testing.assert_allclose(model.predict_proba(feats), got.bot_score, rtol=0, atol=1e-12)
    # Equal reason codes mean equal reasons across both heads (a scores file converts each
    # distinct code once).
    table = got.arrow_table(ctx["event_id"].to_numpy(dtype=object), "v")
    assert table["reasons"].to_pylist() == [list(r) for r in got.reasons]
    loaded = BotModel.from_metadata(model.booster, model.metadata(), "v", 1)
    again = loaded.score_block(block, ch, ty)
    np.testing.assert_array_equal(again.bot_score, got.bot_score)
    assert loaded.provisional is not None
    assert loaded.provisional.feature_names == model.provisional.feature_names


def test_the_provisional_head_is_compiled_only_for_many_rows(world, tmp_path, monkeypatch):
    """Compiling a model leaves its provisional head to the tree walker until a call gives it
    PROVISIONAL_COMPILE_FROM rows (compiling it doubled every model load); the answers are the
    same either way."""
    from scoring import model as model_module

    model, ctx = world["model"], world["ctx"]
    feats = build_features(ctx, world["enrichers"])
    feats[list(LOOKAHEAD_FEATURES)] = np.nan  # every row waits: the head answers them all
    block = feats.to_numpy(np.float32).T.copy()
    ch, ty = ctx["channel"].to_numpy(), ctx["type"].to_numpy()
    loaded = BotModel.from_metadata(model.booster, model.metadata(), "v", 1)
    loaded.compile(tmp_path)
    assert loaded.provisional is not None and loaded.provisional._compiled is None
    walked = loaded.score_block(block, ch, ty)
    assert loaded.provisional._compiled is None
    monkeypatch.setattr(model_module, "PROVISIONAL_COMPILE_FROM", len(ctx))
    compiled = loaded.score_block(block, ch, ty)
    assert loaded.provisional._compiled is not None
    np.testing.assert_allclose(compiled.bot_score, walked.bot_score, rtol=0, atol=1e-9)
    assert list(compiled.reasons) == list(walked.reasons)


def test_the_serial_walk_equals_the_parallel_one(booster, monkeypatch):
    """A few columns are walked on one thread (the parallel kernel's first call cost a worker
    2 CPU s): the same probabilities and reasons, bit for bit."""
    from scoring import explain

    rng = np.random.default_rng(4)
    block = rng.normal(size=(4, 300)).astype(np.float32)
    block[2, ::7] = np.nan
    trees, fmap, cut = flatten(booster), np.arange(4), np.full(300, 0.5)
    serial = explain.score_block(trees, block, fmap, (1.0, 0.0), cut)
    monkeypatch.setattr(explain, "SERIAL_BELOW", 0)
    parallel = explain.score_block(trees, block, fmap, (1.0, 0.0), cut)
    np.testing.assert_array_equal(serial[0], parallel[0])
    np.testing.assert_array_equal(serial[1], parallel[1])
