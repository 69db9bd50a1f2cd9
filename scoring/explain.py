"""Per-feature contributions of a LightGBM model, for the ``reasons`` column.

Path attribution (Saabas): walking a row down each tree, the change of the node's expected value
at every split is credited to the split's feature. The contributions plus the trees' root values
sum to the raw score LightGBM itself returns, and the walk costs no more than a prediction, which
is what lets every scored row carry its reasons at batch speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numba
import numpy as np

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
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

    @property
    def nodes(self) -> tuple[np.ndarray, ...]:
        """The node arrays in the order the numba walkers take them."""
        return (
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.default_left,
            self.missing,
            self.value,
            self.roots,
        )


def flatten(booster: lgb.Booster) -> FlatTrees:
    """Turn a binary LightGBM booster into flat arrays the numba walker understands."""
    dump = booster.dump_model()
    feats, thr, left, right, dleft, miss, val, roots = [], [], [], [], [], [], [], []

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
def _walk(x, acc, feature, threshold, left, right, default_left, missing, value, roots):
    """Add one row's path contributions to ``acc``; returns the raw score."""
    raw = 0.0
    for r in range(roots.shape[0]):
        node = roots[r]
        if node < 0:
            raw += value[~node]
            continue
        raw += value[node]
        while node >= 0:
            f = feature[node]
            v = x[f]
            if np.isnan(v):
                if missing[node] == 2 or missing[node] == 1:
                    go_left = default_left[node]
                else:
                    go_left = threshold[node] >= 0.0
            elif missing[node] == 1 and v == 0.0:
                go_left = default_left[node]
            else:
                go_left = v <= threshold[node]
            child = left[node] if go_left else right[node]
            nxt = child if child >= 0 else ~child
            d = value[nxt] - value[node]
            acc[f] += d
            raw += d
            node = child
    return raw


@numba.njit(cache=True, nogil=True, parallel=True)
def _contributions(X, feature, threshold, left, right, default_left, missing, value, roots, n_feat):
    n = X.shape[0]
    out = np.zeros((n, n_feat), np.float64)
    for i in numba.prange(n):
        _walk(X[i], out[i], feature, threshold, left, right, default_left, missing, value, roots)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _top_k(X, rows, sign, k, feature, threshold, left, right, default_left, missing, value, roots):
    n_feat = X.shape[1]
    out = np.full((rows.shape[0], k), -1, np.int32)
    for j in numba.prange(rows.shape[0]):
        acc = np.zeros(n_feat, np.float64)
        _walk(X[rows[j]], acc, feature, threshold, left, right, default_left, missing, value, roots)
        s = sign[j]
        for m in range(k):
            best = -1
            best_v = 0.0
            for f in range(n_feat):
                v = acc[f] * s
                if v > best_v:
                    best_v = v
                    best = f
            if best < 0:
                break
            out[j, m] = best
            acc[best] = 0.0
    return out


def contributions(trees: FlatTrees, X: np.ndarray) -> np.ndarray:
    """Per-row, per-feature contributions to the raw score (n_rows x n_features)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    return _contributions(X, *trees.nodes, X.shape[1])


def top_reasons(
    trees: FlatTrees,
    X: np.ndarray,
    names: list[str],
    toward_bot: np.ndarray,
    rows: np.ndarray | None = None,
    k: int = 3,
) -> list[list[str]]:
    """Names of up to ``k`` features that pushed each row's score most, strongest first.

    For a row judged a bot, the features that pushed toward bot; otherwise toward human. Features
    with no push in that direction are left out, so a row may carry fewer than ``k``. Only
    ``rows`` (default: all) are explained; the others get an empty list.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = len(X)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    sign = np.where(np.asarray(toward_bot, bool)[rows], 1.0, -1.0)
    idx = _top_k(X, rows, sign, k, *trees.nodes)
    # Few distinct reason triples exist, so build each list once and share it.
    width = len(names) + 1
    code = (
        ((idx[:, 0] + 1).astype(np.int64) * width + (idx[:, 1] + 1)) * width + (idx[:, 2] + 1)
        if k == 3
        else None
    )
    if code is None:
        return _lists(idx, names, rows, n)
    uniq, inverse = np.unique(code, return_inverse=True)
    first = np.zeros(len(uniq), np.int64)
    first[inverse[::-1]] = np.arange(len(inverse))[::-1]
    lists = np.empty(len(uniq) + 1, dtype=object)
    for j, i in enumerate(first.tolist()):  # element-wise: numpy would broadcast equal-length lists
        lists[j] = [names[f] for f in idx[i] if f >= 0]
    lists[-1] = []
    choice = np.full(n, len(uniq), dtype=np.int64)  # rows not explained get the empty list
    choice[rows] = inverse
    return list(lists[choice])


def _lists(idx: np.ndarray, names: list[str], rows: np.ndarray, n: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(n)]
    for r, row_idx in zip(rows.tolist(), idx, strict=True):
        out[r] = [names[f] for f in row_idx if f >= 0]
    return out
