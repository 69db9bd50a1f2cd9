"""The compiled explainer gives exactly the tree walker's scores and reasons."""

import shutil
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pytest

from scoring.compiled import _float_threshold, c_source, compile_explainer
from scoring.explain import flatten, score_block

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


@pytest.fixture(scope="module")
def booster_for(train_booster) -> Callable[[bool], lgb.Booster]:
    """The test booster trained with or without zero_as_missing (800 rows, 25 rounds)."""
    return lambda zero_as_missing: train_booster(zero_as_missing, n=800, rounds=25)


def _block(n: int) -> np.ndarray:
    """A float32 (rows of the block x events) block whose model features sit at rows 5, 0, 3, 1."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[::6, 2] = np.nan
    X[::4, 3] = 0.0
    X[::9, 0] = np.nan
    block = np.full((6, n), 42.0, np.float32)  # rows 2 and 4 are other features
    block[[5, 0, 3, 1]] = X.T
    return block


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_compiled_matches_walker_and_lightgbm(booster_for, tmp_path, zero_as_missing):
    booster = booster_for(zero_as_missing)
    trees = flatten(booster)
    fmap = np.array([5, 0, 3, 1], np.int64)
    block = _block(3000)
    cut = np.where(np.arange(3000) % 2 == 0, 0.3, 0.7)
    calibration = (0.8, -0.1)
    explainer = compile_explainer(trees, fmap, 6, tmp_path)
    assert explainer is not None
    got_p, got_top = explainer(block, calibration, cut, threads=1)
    want_p, want_top = score_block(trees, block, fmap, calibration, cut)
    assert np.array_equal(got_p, want_p)
    assert np.array_equal(got_top, want_top)
    raw = booster.predict(block[fmap].T.astype(np.float64), raw_score=True)
    np.testing.assert_allclose(got_p, 1 / (1 + np.exp(-(0.8 * raw - 0.1))), rtol=0, atol=1e-12)
    # two threads split the rows and agree
    p2, top2 = explainer(np.repeat(block, 8, axis=1), calibration, np.repeat(cut, 8), threads=2)
    assert np.array_equal(p2, np.repeat(got_p, 8)) and np.array_equal(
        top2, np.repeat(got_top, 8, 0)
    )


def test_library_is_cached_by_content(booster_for, tmp_path):
    trees = flatten(booster_for(False))
    fmap = np.arange(4, dtype=np.int64)
    compile_explainer(trees, fmap, 4, tmp_path)
    compile_explainer(trees, fmap, 4, tmp_path)
    assert len(list(tmp_path.glob("explain-*.so"))) == 1
    compile_explainer(trees, fmap[::-1].copy(), 4, tmp_path)  # another layout, another library
    assert len(list(tmp_path.glob("explain-*.so"))) == 2
    source = c_source(trees, fmap, 4)
    assert "tree_24(" in source and "tree_25(" not in source


def _c_float(literal: str) -> np.float32:
    """The value of a C float literal as written by ``_float_threshold``."""
    if literal.endswith("f"):
        return np.float32(float.fromhex(literal[:-1]))
    return np.float32(-np.inf if literal.startswith("-") else np.inf)


def test_float_threshold_keeps_every_comparison():
    """``v <= t`` in float32 with the rounded-down literal equals LightGBM's double comparison."""
    thresholds = [0.1, -0.1, 1.0, 1e-45, -1e-45, 0.0, 3.4e38, 1e300, -1e300, 2.5e-8, 1e6 + 0.3]
    for thr in thresholds:
        literal = _float_threshold(thr)
        t = _c_float(literal)
        with np.errstate(over="ignore"):
            centre = np.float32(thr)
        near = [centre]
        for _ in range(3):
            near += [np.nextafter(near[-1], np.float32(np.inf))]
        for _ in range(3):
            near = [np.nextafter(near[0], np.float32(-np.inf)), *near]
        values = np.array([*near, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
        want = values.astype(np.float64) <= thr
        assert np.array_equal(values <= t, want), (thr, literal)


def test_compiled_matches_walker_at_the_thresholds(booster_for, tmp_path):
    """Rows that sit on every split's threshold and its float neighbours go the walker's way."""
    booster = booster_for(False)
    trees = flatten(booster)
    internal = trees.feature >= 0
    rows = []
    for f, thr in zip(trees.feature[internal], trees.threshold[internal], strict=True):
        centre = np.float32(thr)
        for v in (np.nextafter(centre, np.float32(-1e30)), centre, np.nextafter(centre, 1e30)):
            row = np.zeros(4, np.float32)
            row[f] = v
            rows.append(row)
    block = np.ascontiguousarray(np.array(rows).T)
    n = block.shape[1]
    fmap = np.arange(4, dtype=np.int64)
    cut = np.full(n, 0.5)
    explainer = compile_explainer(trees, fmap, 4, tmp_path)
    got_p, got_top = explainer(block, (1.0, 0.0), cut, threads=1)
    want_p, want_top = score_block(trees, block, fmap, (1.0, 0.0), cut)
    assert np.array_equal(got_p, want_p) and np.array_equal(got_top, want_top)
    # LightGBM reads |v| <= 1e-35 as 0.0 (its kZeroThreshold) and so sends the rows sitting on
    # the splits at -1e-35 the other way; the walker compares them as they are.
    plain = ((np.abs(block) > 1e-35) | (block == 0)).all(axis=0)
    raw = booster.predict(block.T.astype(np.float64), raw_score=True)
    want = 1 / (1 + np.exp(-raw))
    assert plain.sum() > 0.85 * n
    np.testing.assert_allclose(got_p[plain], want[plain], rtol=0, atol=1e-12)
