"""The compiled explainer gives exactly the tree walker's scores and reasons."""

import shutil

import lightgbm as lgb
import numpy as np
import pytest

from scoring.compiled import c_source, compile_explainer
from scoring.explain import flatten, score_block
from tests.unit.test_scoring_model import train_booster

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


def _booster(zero_as_missing: bool) -> lgb.Booster:
    return train_booster(zero_as_missing, n=800, rounds=25)


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
def test_compiled_matches_walker_and_lightgbm(tmp_path, zero_as_missing):
    booster = _booster(zero_as_missing)
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


def test_library_is_cached_by_content(tmp_path):
    trees = flatten(_booster(False))
    fmap = np.arange(4, dtype=np.int64)
    compile_explainer(trees, fmap, 4, tmp_path)
    compile_explainer(trees, fmap, 4, tmp_path)
    assert len(list(tmp_path.glob("explain-*.so"))) == 1
    compile_explainer(trees, fmap[::-1].copy(), 4, tmp_path)  # another layout, another library
    assert len(list(tmp_path.glob("explain-*.so"))) == 2
    source = c_source(trees, fmap, 4)
    assert "tree_24(" in source and "tree_25(" not in source
