"""Exact checks of the causal window kernels on hand-made sequences."""

import numpy as np

from features import kernels

S = 1_000_000_000


def run_window(group, t_s, a, b, window_s):
    n = len(group)
    ev, da, db = (np.zeros(n, np.int32) for _ in range(3))
    kernels.window_counts(
        np.asarray(group, np.int64),
        (np.asarray(t_s, np.float64) * S).astype(np.int64),
        np.asarray(a, np.int64),
        np.asarray(b, np.int64),
        10,
        10,
        window_s * S,
        ev,
        da,
        db,
    )
    return ev.tolist(), da.tolist(), db.tolist()


def test_window_counts_distinct_and_expiry():
    # one group; messages a, recipients b; window 2 s, inclusive of t - 2 s
    ev, da, db = run_window([0] * 5, [0, 1, 1.5, 2, 4.5], [0, 1, 0, 2, 3], [0, 0, 0, 1, 1], 2)
    assert ev == [1, 2, 3, 4, 1]
    assert da == [1, 2, 2, 3, 1]
    assert db == [1, 1, 1, 2, 1]


def test_window_counts_resets_between_groups():
    ev, da, db = run_window([0, 0, 1, 1], [0, 1, 1, 1.5], [0, 1, 0, 0], [0, 1, 0, 0], 10)
    assert ev == [1, 2, 1, 2]
    assert da == [1, 2, 1, 1]
    assert db == [1, 2, 1, 1]


def test_message_history_prior_counts_and_links():
    group = np.array([0, 0, 0, 0, 1], np.int64)
    t = np.array([0, 5, 6, 10, 3], np.int64) * S
    is_click = np.array([0, 1, 1, 1, 1], np.int8)
    pos = np.array([-1, 2, 2, 0, 1], np.int64)
    outs = [np.zeros(5, np.int64) for _ in range(5)]
    kernels.message_history(group, t, is_click, pos, *outs)
    prior, opens, clicks, distinct, gap = (o.tolist() for o in outs)
    assert prior == [0, 1, 2, 3, 0]
    assert opens == [0, 1, 1, 1, 0]
    assert clicks == [0, 0, 1, 2, 0]
    assert distinct == [0, 1, 1, 2, 1]
    assert gap == [-1, 5 * S, 1 * S, 4 * S, -1]
