"""Numba kernels for causal sliding-window features.

Every kernel walks events in a *total order* (group, occurred_at, event_id) so that an event's
features depend only on itself and the events before it. That is what makes batch scoring, online
micro-batches and Spark partitions agree exactly.
"""

from __future__ import annotations

import numba
import numpy as np

_NAT = np.iinfo(np.int64).min  # a missing timestamp


@numba.njit(cache=True, nogil=True, inline="always")
def _put(out, j_ev, j_a, j_b, r, ev, dist_a, dist_b):  # noqa: ANN001, ANN202
    if j_ev >= 0:
        out[j_ev, r] = ev
    if j_a >= 0:
        out[j_a, r] = dist_a
    if j_b >= 0:
        out[j_b, r] = dist_b


@numba.njit(cache=True, nogil=True)
def group_order(
    codes: np.ndarray, tenant: np.ndarray, n_codes: int
) -> tuple[np.ndarray, np.ndarray]:
    """A stable permutation grouping rows by (tenant, code), and each position's group id.

    ``codes`` are dense (``0 <= code < n_codes``) and the rows are in causal order, so a stable
    counting sort by code keeps causal order inside a code, where tenants are already contiguous.
    """
    n = codes.shape[0]
    start = np.zeros(n_codes + 1, np.int64)
    for i in range(n):
        start[codes[i] + 1] += 1
    for c in range(n_codes):
        start[c + 1] += start[c]
    perm = np.empty(n, np.int64)
    for i in range(n):
        c = codes[i]
        perm[start[c]] = i
        start[c] += 1
    group = np.empty(n, np.int64)
    g = 0
    for i in range(n):
        if i > 0 and (
            codes[perm[i]] != codes[perm[i - 1]] or tenant[perm[i]] != tenant[perm[i - 1]]
        ):
            g += 1
        group[i] = g
    return perm, group


@numba.njit(cache=True, nogil=True)
def _links(group: np.ndarray, values: np.ndarray, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Per position (group order): the previous and next position of its group with the same
    value (-1 and ``n`` when there is none)."""
    n = values.shape[0]
    prev = np.empty(n, np.int64)
    nxt = np.full(n, n, np.int64)
    last = np.full(n_values, -1, np.int64)
    start = 0
    for i in range(n):
        if i > 0 and group[i] != group[i - 1]:
            start = i
        j = last[values[i]]
        if j >= start:
            prev[i] = j
            nxt[j] = i
        else:
            prev[i] = -1
        last[values[i]] = i
    return prev, nxt


@numba.njit(cache=True, nogil=True)
def window_counts(
    perm: np.ndarray,
    group: np.ndarray,
    t_ns: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n_a: int,
    n_b: int,
    windows_ns: np.ndarray,
    rows: np.ndarray,
    missing: np.ndarray,
    out: np.ndarray,
    out_rows: np.ndarray,
) -> None:
    """Per event and window: events, distinct ``a`` and distinct ``b`` in ``[t - window, t]`` of
    its group, written straight into the feature block.

    ``perm``/``group`` come from :func:`group_order` over causal positions; ``t_ns``, ``a`` and
    ``b`` (dense codes such as message and contact) are in causal order and ``rows`` maps a causal
    position to its row of the block. ``out_rows[w]`` holds the block rows of (events, distinct a,
    distinct b) for window ``w`` (-1: not wanted); rows flagged ``missing`` get NaN.

    Two pointers keep each window. A value is counted at its first position inside the window:
    an event entering counts if its value's previous position is before the window; an event
    leaving hands the count to its value's next position if that one is inside. The links are
    found once, so every window pass reads memory in order.
    """
    n = perm.shape[0]
    # Gather once into group order: the window loops below then read sequentially.
    tg = np.empty(n, np.int64)
    ag = np.empty(n, np.int64)
    bg = np.empty(n, np.int64)
    rg = np.empty(n, np.int64)
    gone = np.empty(n, np.bool_)
    for i in range(n):
        p = perm[i]
        tg[i] = t_ns[p]
        ag[i] = a[p]
        bg[i] = b[p]
        rg[i] = rows[p]
        gone[i] = missing[rg[i]]
    prev_a, next_a = _links(group, ag, n_a)
    prev_b, next_b = _links(group, bg, n_b)
    for w in range(windows_ns.shape[0]):
        width = windows_ns[w]
        j_ev, j_a, j_b = out_rows[w, 0], out_rows[w, 1], out_rows[w, 2]
        left = 0
        dist_a = 0
        dist_b = 0
        for i in range(n):
            if i > 0 and group[i] != group[i - 1]:
                left = i  # a new group starts with an empty window
                dist_a = 0
                dist_b = 0
            if prev_a[i] < left:
                dist_a += 1
            if prev_b[i] < left:
                dist_b += 1
            lo = tg[i] - width
            while tg[left] < lo:
                dist_a += (next_a[left] <= i) - 1
                dist_b += (next_b[left] <= i) - 1
                left += 1
            r = rg[i]
            if gone[i]:
                _put(out, j_ev, j_a, j_b, r, np.nan, np.nan, np.nan)
            else:
                _put(out, j_ev, j_a, j_b, r, i - left + 1, dist_a, dist_b)


@numba.njit(cache=True, nogil=True)
def message_history(
    perm: np.ndarray,
    group: np.ndarray,
    t_ns: np.ndarray,
    is_click: np.ndarray,
    link_pos: np.ndarray,
    ip_key: np.ndarray,
    ua_key: np.ndarray,
    lookback: int,
    rows: np.ndarray,
    out_prior_events: np.ndarray,
    out_prior_opens: np.ndarray,
    out_prior_clicks: np.ndarray,
    out_distinct_links: np.ndarray,
    out_gap_ns: np.ndarray,
    out_same_ip: np.ndarray,
    out_same_ua: np.ndarray,
    out_first_same_ip_ns: np.ndarray,
) -> None:
    """Per event, over its message's events up to and including it (ordered by time).

    ``perm``/``group`` group causal positions by message (:func:`group_order`); inputs are in
    causal order and outputs are written at ``rows[position]``. ``link_pos`` < 0 means unknown.
    Distinct clicked links are tracked in a 64-bit mask; positions beyond 63 share the top bit,
    which only undercounts messages with more than 64 links. Same-IP and same-UA counts (keys < 0
    never match) look back over at most ``lookback`` earlier events; ``out_first_same_ip_ns`` is
    the time since the earliest same-IP one of those, -1 if none.
    """
    n = perm.shape[0]
    prior = 0
    opens = 0
    clicks = 0
    mask = np.uint64(0)
    distinct = 0
    begin = 0
    for i in range(n):
        p = perm[i]
        r = rows[p]
        if i == 0 or group[i] != group[i - 1]:
            begin = i
            prior = 0
            opens = 0
            clicks = 0
            mask = np.uint64(0)
            distinct = 0
            out_gap_ns[r] = -1
        else:
            out_gap_ns[r] = t_ns[p] - t_ns[perm[i - 1]]
        out_prior_events[r] = prior
        out_prior_opens[r] = opens
        out_prior_clicks[r] = clicks
        if is_click[p]:
            lp = link_pos[p]
            if lp >= 0:
                bit = np.uint64(1) << np.uint64(min(lp, 63))
                if (mask & bit) == 0:
                    mask |= bit
                    distinct += 1
            clicks += 1
        else:
            opens += 1
        out_distinct_links[r] = distinct
        prior += 1
        same_ip = 0
        same_ua = 0
        first_ip = -1
        for j in range(i - 1, max(begin, i - lookback) - 1, -1):
            q = perm[j]
            if ip_key[p] >= 0 and ip_key[q] == ip_key[p]:
                same_ip += 1
                first_ip = t_ns[p] - t_ns[q]
            if ua_key[p] >= 0 and ua_key[q] == ua_key[p]:
                same_ua += 1
        out_same_ip[r] = same_ip
        out_same_ua[r] = same_ua
        out_first_same_ip_ns[r] = first_ip


@numba.njit(cache=True, nogil=True)
def message_opens(
    perm: np.ndarray,
    group: np.ndarray,
    t_ns: np.ndarray,
    deliv_ns: np.ndarray,
    is_click: np.ndarray,
    ip_key: np.ndarray,
    min_delay_ns: int,
    lookback: int,
    rows: np.ndarray,
    out_since_first_ns: np.ndarray,
    out_since_open_ns: np.ndarray,
    out_late_opens_other_ip: np.ndarray,
) -> None:
    """Per event, what a person's earlier read of its message looks like (ordered by time).

    ``perm``/``group`` group causal positions by message (:func:`group_order`); inputs are in
    causal order and outputs are written at ``rows[position]``. ``out_since_first_ns``: time since
    the message's first event (0 for the first); ``out_since_open_ns``: time since its latest
    earlier open (-1 if none); ``out_late_opens_other_ip``: of the last ``lookback`` earlier
    events, the opens made at least ``min_delay_ns`` after delivery from another address (an
    unknown address, key < 0, counts as another; an unknown delivery never counts as late).
    """
    n = perm.shape[0]
    begin = 0
    first_t = 0
    last_open = -1
    for i in range(n):
        p = perm[i]
        r = rows[p]
        if i == 0 or group[i] != group[i - 1]:
            begin = i
            first_t = t_ns[p]
            last_open = -1
        out_since_first_ns[r] = t_ns[p] - first_t
        out_since_open_ns[r] = -1 if last_open < 0 else t_ns[p] - t_ns[last_open]
        late = 0
        for j in range(i - 1, max(begin, i - lookback) - 1, -1):
            q = perm[j]
            if is_click[q] or deliv_ns[q] == _NAT:
                continue
            if t_ns[q] - deliv_ns[q] >= min_delay_ns and (ip_key[p] < 0 or ip_key[q] != ip_key[p]):
                late += 1
        out_late_opens_other_ip[r] = late
        if not is_click[p]:
            last_open = p


@numba.njit(cache=True, nogil=True)
def other_message_gap(
    perm: np.ndarray,
    group: np.ndarray,
    t_ns: np.ndarray,
    message: np.ndarray,
    window_ns: int,
    rows: np.ndarray,
    missing: np.ndarray,
    out: np.ndarray,
    out_row: int,
) -> None:
    """Per event: seconds since the latest earlier event of its group (a burst key) on *another*
    message, if within ``window_ns`` (else NaN), written into ``out[out_row]``.

    A scanner that fans out over a domain's recipients comes back within seconds; a cloud
    desktop's or a proxy's people, minutes apart. Bounded by the window so the online API's burst
    history (the longest window) gives the batch value. Rows flagged ``missing`` get NaN.
    """
    n = perm.shape[0]
    last_t = 0
    last_msg = -1
    other_t = 0
    has_other = False
    for i in range(n):
        p = perm[i]
        r = rows[p]
        if i == 0 or group[i] != group[i - 1]:
            last_msg = -1
            has_other = False
        m = message[p]
        t = t_ns[p]
        gap = -1
        if last_msg >= 0 and last_msg != m:
            gap = t - last_t
        elif has_other:
            gap = t - other_t
        if missing[r] or gap < 0 or gap > window_ns:
            out[out_row, r] = np.nan
        else:
            out[out_row, r] = gap / 1e9
        # Keep the latest event and the latest one on a message other than the latest's.
        if last_msg >= 0 and m != last_msg:
            other_t = last_t
            has_other = True
        last_t = t
        last_msg = m


@numba.njit(cache=True, nogil=True)
def message_lookahead(
    perm: np.ndarray,
    group: np.ndarray,
    t_ns: np.ndarray,
    horizon_ns: np.ndarray,
    is_click: np.ndarray,
    link_pos: np.ndarray,
    ip_key: np.ndarray,
    window_ns: int,
    rows: np.ndarray,
    out_other_click_ns: np.ndarray,
    out_other_same_link_ns: np.ndarray,
    out_same_ip_ns: np.ndarray,
) -> None:
    """Per event, how soon its message shows, in the ``window_ns`` after it (ordered by time):
    a click from another address (an unknown address counts as another), such a click on the
    same link (a known position), and an event from the same address; ``window_ns`` + 1 s if
    none did. All three are -1 while the window has not passed: while ``t + window_ns`` is
    after ``horizon_ns``, the latest time of the event's tenant in the data (the answer is
    then provisional).

    ``perm``/``group`` group causal positions by message (:func:`group_order`); inputs are in
    causal order and outputs are written at ``rows[position]``.
    """
    n = perm.shape[0]
    none = window_ns + 1_000_000_000
    for i in range(n):
        p = perm[i]
        r = rows[p]
        if t_ns[p] + window_ns > horizon_ns[p]:
            out_other_click_ns[r] = -1
            out_other_same_link_ns[r] = -1
            out_same_ip_ns[r] = -1
            continue
        other = none
        same_link = none
        same_ip = none
        j = i + 1
        while j < n and group[j] == group[i]:
            q = perm[j]
            gap = t_ns[q] - t_ns[p]
            if gap > window_ns:
                break
            if ip_key[p] >= 0 and ip_key[q] == ip_key[p]:
                same_ip = min(same_ip, gap)
            elif is_click[q]:
                other = min(other, gap)
                if is_click[p] and link_pos[p] >= 0 and link_pos[q] == link_pos[p]:
                    same_link = min(same_link, gap)
            j += 1
        out_other_click_ns[r] = other
        out_other_same_link_ns[r] = same_link
        out_same_ip_ns[r] = same_ip
