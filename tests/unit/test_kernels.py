"""Exact checks of the causal window kernels on hand-made sequences."""

import numpy as np

from features import kernels

S = 1_000_000_000


def run_window(group, t_s, a, b, windows_s, missing=None):
    """Rows already in group order (identity permutation); one block row per output."""
    n = len(group)
    out = np.full((3 * len(windows_s), n), -7.0, np.float32)
    out_rows = np.arange(3 * len(windows_s), dtype=np.int64).reshape(len(windows_s), 3)
    kernels.window_counts(
        np.arange(n, dtype=np.int64),
        np.asarray(group, np.int64),
        (np.asarray(t_s, np.float64) * S).astype(np.int64),
        np.asarray(a, np.int64),
        np.asarray(b, np.int64),
        10,
        10,
        np.asarray(windows_s, np.int64) * S,
        np.arange(n, dtype=np.int64),
        np.zeros(n, bool) if missing is None else np.asarray(missing, bool),
        out,
        out_rows,
    )
    return [row.tolist() for row in out]


def test_window_counts_distinct_and_expiry():
    # one group; messages a, recipients b; window 2 s, inclusive of t - 2 s
    ev, da, db = run_window([0] * 5, [0, 1, 1.5, 2, 4.5], [0, 1, 0, 2, 3], [0, 0, 0, 1, 1], [2])
    assert ev == [1, 2, 3, 4, 1]
    assert da == [1, 2, 2, 3, 1]
    assert db == [1, 1, 1, 2, 1]


def test_window_counts_resets_between_groups():
    ev, da, db = run_window([0, 0, 1, 1], [0, 1, 1, 1.5], [0, 1, 0, 0], [0, 1, 0, 0], [10])
    assert ev == [1, 2, 1, 2]
    assert da == [1, 2, 1, 1]
    assert db == [1, 2, 1, 1]


def test_window_counts_several_windows_and_missing_rows():
    rows = run_window([0] * 3, [0, 5, 30], [0, 1, 1], [0, 0, 1], [2, 60], missing=[0, 1, 0])
    ev2, da2, db2, ev60, da60, db60 = rows
    assert np.isnan(ev2[1]) and np.isnan(da60[1])
    assert (ev2[0], ev2[2], da2[2], db2[2]) == (1, 1, 1, 1)
    # the 60 s window counts the missing row's event too: only its own output is NaN
    assert (ev60[0], ev60[2], da60[2], db60[2]) == (1, 3, 2, 2)


def test_window_counts_skips_unwanted_outputs():
    n = 2
    out = np.full((1, n), -7.0, np.float32)
    kernels.window_counts(
        np.arange(n, dtype=np.int64),
        np.zeros(n, np.int64),
        np.array([0, S], np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        1,
        1,
        np.array([10 * S], np.int64),
        np.arange(n, dtype=np.int64),
        np.zeros(n, bool),
        out,
        np.array([[0, -1, -1]], np.int64),
    )
    assert out.tolist() == [[1.0, 2.0]]


def test_group_order_is_stable_and_splits_tenants():
    codes = np.array([1, 0, 1, 0, 1], np.int64)
    tenant = np.array([0, 0, 0, 1, 1], np.int64)  # causal order: tenant 0 rows, then tenant 1
    perm, group = kernels.group_order(codes, tenant, 2)
    assert perm.tolist() == [1, 3, 0, 2, 4]
    assert group.tolist() == [0, 1, 2, 2, 3]


def test_message_history_prior_counts_and_links():
    group = np.array([0, 0, 0, 0, 1], np.int64)
    t = np.array([0, 5, 6, 10, 3], np.int64) * S
    is_click = np.array([0, 1, 1, 1, 1], np.int8)
    pos = np.array([-1, 2, 2, 0, 1], np.int64)
    ip = np.array([7, 8, 7, -1, 7], np.int64)  # -1 (no IP) never matches
    ua = np.array([1, 1, 2, 1, 1], np.int64)
    outs = [np.zeros(5, np.int64) for _ in range(8)]
    ident = np.arange(5, dtype=np.int64)
    kernels.message_history(ident, group, t, is_click, pos, ip, ua, 64, ident, *outs)
    prior, opens, clicks, distinct, gap, same_ip, same_ua, first_ip = (o.tolist() for o in outs)
    assert prior == [0, 1, 2, 3, 0]
    assert opens == [0, 1, 1, 1, 0]
    assert clicks == [0, 0, 1, 2, 0]
    assert distinct == [0, 1, 1, 2, 1]
    assert gap == [-1, 5 * S, 1 * S, 4 * S, -1]
    assert same_ip == [0, 0, 1, 0, 0]  # the last row is another message
    assert same_ua == [0, 1, 0, 2, 0]
    assert first_ip == [-1, -1, 6 * S, -1, -1]


def test_message_history_lookback_bounds_the_same_key_scan():
    n = 5
    ident = np.arange(n, dtype=np.int64)
    outs = [np.zeros(n, np.int64) for _ in range(8)]
    same = np.zeros(n, np.int64)
    kernels.message_history(
        ident,
        np.zeros(n, np.int64),
        ident * S,
        np.zeros(n, np.int8),
        np.full(n, -1, np.int64),
        same,
        same,
        2,
        ident,
        *outs,
    )
    assert outs[5].tolist() == [0, 1, 2, 2, 2]
    assert outs[7].tolist() == [-1, S, 2 * S, 2 * S, 2 * S]


def test_message_history_writes_through_the_permutation():
    # two messages interleaved in causal order; perm groups them, rows maps back
    perm = np.array([0, 2, 1], np.int64)
    group = np.array([0, 0, 1], np.int64)
    t = np.array([0, 1, 4], np.int64) * S
    outs = [np.zeros(3, np.int64) for _ in range(8)]
    rows = np.array([2, 0, 1], np.int64)  # causal position -> row
    keys = np.zeros(3, np.int64)
    kernels.message_history(
        perm, group, t, np.zeros(3, np.int8), np.full(3, -1, np.int64), keys, keys, 64, rows, *outs
    )
    prior, _, _, _, gap, same_ip = (o.tolist() for o in outs[:6])
    assert same_ip == [0, 1, 0]
    # causal positions 0 and 2 are one message (rows 2 and 1); position 1 alone (row 0)
    assert prior == [0, 1, 0]
    assert gap == [-1, 4 * S, -1]


def test_message_opens_first_event_last_open_and_late_reads():
    # message 0: open at 5 s (4 s after delivery at 1 s: not late), open at 100 s from ip 8
    # (late), click at 130 s from ip 9; message 1: a click with an unknown delivery.
    group = np.array([0, 0, 0, 0, 1], np.int64)
    t = np.array([5, 100, 130, 131, 50], np.int64) * S
    deliv = np.array([1, 1, 1, 1, np.iinfo(np.int64).min], np.int64) * np.array(
        [S, S, S, S, 1], np.int64
    )
    is_click = np.array([0, 0, 1, 1, 1], np.int8)
    ip = np.array([7, 8, 9, 8, 7], np.int64)
    outs = [np.zeros(5, np.int64) for _ in range(3)]
    ident = np.arange(5, dtype=np.int64)
    kernels.message_opens(ident, group, t, deliv, is_click, ip, 60 * S, 64, ident, *outs)
    since_first, since_open, late = (o.tolist() for o in outs)
    assert since_first == [0, 95 * S, 125 * S, 126 * S, 0]
    assert since_open == [-1, 95 * S, 30 * S, 31 * S, -1]
    assert late == [0, 0, 1, 0, 0]  # the last click of m0 comes from ip 8, the late read's own


def test_other_message_gap_skips_the_same_message_and_is_bounded():
    # one key: m0 at 0 s, m0 at 1 s, m1 at 1.5 s, m1 at 3 s, m0 at 700 s; another key: m2 at 2 s
    group = np.array([0, 0, 0, 0, 0, 1], np.int64)
    t = (np.array([0, 1, 1.5, 3, 700, 2]) * S).astype(np.int64)
    message = np.array([0, 0, 1, 1, 0, 2], np.int64)
    out = np.full((1, 6), -7.0, np.float32)
    missing = np.array([0, 0, 0, 0, 0, 0], bool)
    ident = np.arange(6, dtype=np.int64)
    kernels.other_message_gap(ident, group, t, message, 600 * S, ident, missing, out, 0)
    got = out[0].tolist()
    assert np.isnan(got[0]) and np.isnan(got[1])  # nothing on another message yet
    assert got[2] == 0.5  # m1 after m0's latest (1 s)
    assert got[3] == 2.0  # m1 again: still m0's latest (1 s)
    assert np.isnan(got[4])  # m0 at 700 s: m1's latest is 697 s earlier, beyond the window
    assert np.isnan(got[5])  # another key starts afresh
    missing[2] = True
    kernels.other_message_gap(ident, group, t, message, 600 * S, ident, missing, out, 0)
    assert np.isnan(out[0, 2])
