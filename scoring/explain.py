"""Per-feature contributions of a LightGBM model, for the ``reasons`` column.

Path attribution (Saabas): walking a row down each tree, the change of the node's expected value
at every split is credited to the split's feature. The contributions plus the trees' root values
sum to the raw score LightGBM itself returns, and the walk costs no more than a prediction, which
is what lets every scored row carry its reasons at batch speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numba
import numpy as np
import pandas as pd

if TYPE_CHECKING:  # LightGBM (and the sklearn and scipy it imports) only where a booster is read
    import lightgbm as lgb

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True, eq=False)
class FlatTrees:
    """All trees of a booster as flat node arrays; leaves are encoded as ``~leaf_node``."""

    feature: np.ndarray  # int32 split feature per node
    threshold: np.ndarray  # float64
    left: np.ndarray  # int32 child (>= 0 internal node, < 0 leaf as ~index into nodes)
    right: np.ndarray
    default_left: np.ndarray  # bool
    missing: np.ndarray  # int8: 0 None, 1 Zero, 2 NaN
    value: np.ndarray  # float64 expected value of the node (leaf value for leaves)
    roots: np.ndarray  # int32 index of each tree's root node
    base: float  # sum of the roots' expected values

    @cached_property
    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nodes as the numba walker reads them, one row per node so a visit touches one or
        two cache lines: ``ints`` (feature, left, right, flags), ``floats`` (threshold, change of
        expected value going left, going right; a leaf's value in column 0) and the roots.

        Flags: 1 NaN goes left, 2 zero counts as missing, 4 missing goes left (default_left).
        LightGBM sends NaN to the default side when missing is NaN or Zero, and otherwise treats
        it as 0.0 (``0.0 <= threshold`` goes left).
        """
        n = len(self.feature)
        internal = self.feature >= 0
        nan_left = np.where(
            (self.missing == 2) | (self.missing == 1), self.default_left, self.threshold >= 0.0
        )
        flags = nan_left.astype(np.int32) | (self.missing == 1) * 2 | self.default_left * 4
        ints = np.stack([self.feature, self.left, self.right, flags.astype(np.int32)], axis=1)
        child = lambda c: np.where(c >= 0, c, ~c)  # noqa: E731
        floats = np.zeros((n, 3), dtype=np.float64)
        floats[:, 0] = np.where(internal, self.threshold, self.value)
        floats[internal, 1] = self.value[child(self.left[internal])] - self.value[internal]
        floats[internal, 2] = self.value[child(self.right[internal])] - self.value[internal]
        return np.ascontiguousarray(ints, dtype=np.int32), floats, self.roots


def flatten(booster: lgb.Booster) -> FlatTrees:
    """Turn a binary LightGBM booster into flat arrays the numba walker understands."""
    dump = booster.dump_model()
    feats: list[int] = []
    thr: list[float] = []
    left: list[int] = []
    right: list[int] = []
    dleft: list[bool] = []
    miss: list[int] = []
    val: list[float] = []
    roots: list[int] = []

    def add(node: dict) -> int:
        idx = len(feats)
        feats.append(-1)
        thr.append(0.0)
        left.append(0)
        right.append(0)
        dleft.append(False)
        miss.append(0)
        if "leaf_value" in node:
            val.append(float(node["leaf_value"]))
            return ~idx
        if node.get("decision_type", "<=") != "<=":
            raise ValueError("categorical splits are not supported by the explainer")
        val.append(float(node["internal_value"]))
        feats[idx] = int(node["split_feature"])
        thr[idx] = float(node["threshold"])
        dleft[idx] = bool(node["default_left"])
        miss[idx] = _MISSING[node["missing_type"]]
        left[idx] = add(node["left_child"])
        right[idx] = add(node["right_child"])
        return idx

    base = 0.0
    for tree in dump["tree_info"]:
        root = add(tree["tree_structure"])
        roots.append(root)
        base += val[root if root >= 0 else ~root]
    return FlatTrees(
        np.asarray(feats, np.int32),
        np.asarray(thr, np.float64),
        np.asarray(left, np.int32),
        np.asarray(right, np.int32),
        np.asarray(dleft, np.bool_),
        np.asarray(miss, np.int8),
        np.asarray(val, np.float64),
        np.asarray(roots, np.int32),
        base,
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _walk(x, fmap, acc, ints, floats, roots):
    """Add one row's path contributions to ``acc`` (indexed by model feature); returns the raw
    score, summed leaf by leaf in tree order as LightGBM does. Model feature ``f`` is
    ``x[fmap[f]]``, so ``x`` may be a row of a matrix or a column of a (features x rows) block."""
    raw = 0.0
    for r in range(roots.shape[0]):
        node = roots[r]
        while node >= 0:
            f = ints[node, 0]
            v = np.float64(x[fmap[f]])
            flags = ints[node, 3]
            if np.isnan(v):
                go_left = (flags & 1) != 0
            elif (flags & 2) != 0 and v == 0.0:
                go_left = (flags & 4) != 0
            else:
                go_left = v <= floats[node, 0]
            if go_left:
                acc[f] += floats[node, 1]
                node = ints[node, 1]
            else:
                acc[f] += floats[node, 2]
                node = ints[node, 2]
        raw += floats[~node, 0]
    return raw


@numba.njit(cache=True, nogil=True, inline="always")
def _top(acc, s, out):
    """The indices of the largest ``acc * s`` entries (> 0), strongest first, into ``out``."""
    for m in range(out.shape[0]):
        best = -1
        best_v = 0.0
        for f in range(acc.shape[0]):
            v = acc[f] * s
            if v > best_v:
                best_v = v
                best = f
        if best < 0:
            break
        out[m] = best
        acc[best] = 0.0


@numba.njit(cache=True, nogil=True, parallel=True)
def _contributions(X, ints, floats, roots):
    n, n_feat = X.shape
    fmap = np.arange(n_feat)
    out = np.zeros((n, n_feat), np.float64)
    for i in numba.prange(n):
        _walk(X[i], fmap, out[i], ints, floats, roots)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _top_k(X, rows, sign, k, ints, floats, roots):
    n_feat = X.shape[1]
    fmap = np.arange(n_feat)
    out = np.full((rows.shape[0], k), -1, np.int32)
    for j in numba.prange(rows.shape[0]):
        acc = np.zeros(n_feat, np.float64)
        _walk(X[rows[j]], fmap, acc, ints, floats, roots)
        _top(acc, sign[j], out[j])
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _score_block(block, fmap, a, b, cut, k, ints, floats, roots):
    n = block.shape[1]
    n_feat = fmap.shape[0]
    proba = np.empty(n, np.float64)
    top = np.full((n, k), -1, np.int32)
    for i in numba.prange(n):
        acc = np.zeros(n_feat, np.float64)
        raw = _walk(block[:, i], fmap, acc, ints, floats, roots)
        p = 1.0 / (1.0 + np.exp(-(a * raw + b)))
        proba[i] = p
        _top(acc, 1.0 if p >= cut[i] else -1.0, top[i])
    return proba, top


# The same kernel, compiled without threads: the same arithmetic in the same order per column.
_score_block_serial = numba.njit(cache=True, nogil=True)(_score_block.py_func)
SERIAL_BELOW = 20_000  # columns


def score_block(
    trees: FlatTrees,
    block: np.ndarray,
    fmap: np.ndarray,
    calibration: tuple[float, float],
    cut: np.ndarray,
    k: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probability and the ``k`` strongest features (model feature indices, -1 for
    none) of every column of a (features x rows) block, in one walk of the trees.

    ``fmap[f]`` is the block row of model feature ``f``; ``cut`` each column's threshold. For a
    column at or above its threshold the features pushing toward bot are named, otherwise those
    pushing toward human, as :func:`top_reasons` does.
    """
    a, b = calibration
    # A few columns (a provisional head's rows of a batch part) walk on this thread: loading the
    # parallel kernel and its threads cost a scoring worker 2 CPU s at its first call.
    kernel = _score_block if block.shape[1] >= SERIAL_BELOW else _score_block_serial
    return kernel(block, fmap, float(a), float(b), np.asarray(cut, np.float64), k, *trees.packed)


def reason_codes(idx: np.ndarray, n_names: int) -> np.ndarray:
    """Rows of feature indices (-1 = none) as one int64 per row: the indices as digits in base
    ``n_names + 1``. Equal rows get equal codes, 0 is "no reason", and the code depends only on
    the row (so parts scored apart share one numbering)."""
    n, k = idx.shape
    width = n_names + 1
    code = np.zeros(n, np.int64)
    for m in range(k):
        code = code * width + (idx[:, m] + 1)
    return code


def reason_lists(idx: np.ndarray, names: list[str]) -> np.ndarray:
    """Rows of feature indices (-1 = none) as an object array of name lists; equal rows share
    one list (few distinct triples exist), so a million rows cost a hash pass, not a million
    lists."""
    return lists_of_codes(reason_codes(idx, len(names)), idx.shape[1], names)


def lists_of_codes(codes: np.ndarray, k: int, names: list[str]) -> np.ndarray:
    """The name lists of :func:`reason_codes`' codes (``k`` indices each), equal codes sharing
    one list."""
    width = len(names) + 1
    inverse, uniq = pd.factorize(codes)
    lists = np.empty(len(uniq), dtype=object)
    for j, c in enumerate(uniq.tolist()):  # element-wise: numpy would broadcast equal-length lists
        digits = []
        for _ in range(k):
            c, f = divmod(c, width)
            digits.append(f - 1)
        lists[j] = [names[f] for f in reversed(digits) if f >= 0]
    return lists[inverse]


def contributions(trees: FlatTrees, X: np.ndarray) -> np.ndarray:
    """Per-row, per-feature contributions to the raw score (n_rows x n_features)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    return _contributions(X, *trees.packed)


def top_reasons(
    trees: FlatTrees,
    X: np.ndarray,
    names: list[str],
    toward_bot: np.ndarray,
    rows: np.ndarray | None = None,
    k: int = 3,
) -> np.ndarray:
    """Names of up to ``k`` features that pushed each row's score most, strongest first.

    For a row judged a bot, the features that pushed toward bot; otherwise toward human. Features
    with no push in that direction are left out, so a row may carry fewer than ``k``. Only
    ``rows`` (default: all) are explained; the others get an empty list.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = len(X)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    sign = np.where(np.asarray(toward_bot, bool)[rows], 1.0, -1.0)
    idx = _top_k(X, rows, sign, k, *trees.packed)
    full = np.full((n, k), -1, np.int32)  # rows not explained get the empty list
    full[rows] = idx
    return reason_lists(full, names)
