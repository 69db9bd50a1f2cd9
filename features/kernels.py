"""Numba kernels for causal sliding-window features.

Every kernel walks events in a *total order* (group, occurred_at, event_id) so that an event's
features depend only on itself and the events before it. That is what makes batch scoring, online
micro-batches and Spark partitions agree exactly.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _drop(cnt: np.ndarray, v: int) -> int:
    """Take one occurrence of ``v`` out of the window; 1 if it was the last one."""
    cnt[v] -= 1
    return 1 if cnt[v] == 0 else 0


@numba.njit(cache=True, nogil=True)
def window_counts(
    group: np.ndarray,
    t_ns: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n_a: int,
    n_b: int,
    window_ns: int,
    out_events: np.ndarray,
    out_distinct_a: np.ndarray,
    out_distinct_b: np.ndarray,
) -> None:
    """Per event: events, distinct ``a`` and distinct ``b`` in ``[t - window, t]`` of its group.

    Inputs are already ordered by (group, time, tie-breaker); ``a`` and ``b`` are dense codes
    (``< n_a``/``n_b``) such as message and contact. Two pointers keep the window; count arrays
    keep the distinct values, and are emptied at each group change.
    """
    n = group.shape[0]
    cnt_a = np.zeros(n_a, np.int32)
    cnt_b = np.zeros(n_b, np.int32)
    left = 0
    dist_a = 0
    dist_b = 0
    for i in range(n):
        if i > 0 and group[i] != group[i - 1]:
            # New group: empty the window so counts never leak across groups.
            while left < i:
                dist_a -= _drop(cnt_a, a[left])
                dist_b -= _drop(cnt_b, b[left])
                left += 1
        cnt_a[a[i]] += 1
        if cnt_a[a[i]] == 1:
            dist_a += 1
        cnt_b[b[i]] += 1
        if cnt_b[b[i]] == 1:
            dist_b += 1
        lo = t_ns[i] - window_ns
        while t_ns[left] < lo:
            dist_a -= _drop(cnt_a, a[left])
            dist_b -= _drop(cnt_b, b[left])
            left += 1
        out_events[i] = i - left + 1
        out_distinct_a[i] = dist_a
        out_distinct_b[i] = dist_b


@numba.njit(cache=True, nogil=True)
def message_history(
    group: np.ndarray,
    t_ns: np.ndarray,
    is_click: np.ndarray,
    link_pos: np.ndarray,
    out_prior_events: np.ndarray,
    out_prior_opens: np.ndarray,
    out_prior_clicks: np.ndarray,
    out_distinct_links: np.ndarray,
    out_gap_ns: np.ndarray,
) -> None:
    """Per event, over its message's events up to and including it (ordered by time).

    ``link_pos`` < 0 means unknown. Distinct clicked links are tracked in a 64-bit mask; positions
    beyond 63 share the top bit, which only undercounts messages with more than 64 links.
    """
    n = group.shape[0]
    prior = 0
    opens = 0
    clicks = 0
    mask = np.uint64(0)
    distinct = 0
    for i in range(n):
        if i == 0 or group[i] != group[i - 1]:
            prior = 0
            opens = 0
            clicks = 0
            mask = np.uint64(0)
            distinct = 0
            out_gap_ns[i] = -1
        else:
            out_gap_ns[i] = t_ns[i] - t_ns[i - 1]
        out_prior_events[i] = prior
        out_prior_opens[i] = opens
        out_prior_clicks[i] = clicks
        if is_click[i]:
            p = link_pos[i]
            if p >= 0:
                bit = np.uint64(1) << np.uint64(min(p, 63))
                if (mask & bit) == 0:
                    mask |= bit
                    distinct += 1
            clicks += 1
        else:
            opens += 1
        out_distinct_links[i] = distinct
        prior += 1
