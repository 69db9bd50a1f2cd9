"""Pure feature computation over an event-context frame (events joined with their message).

``feature_block`` is the only place features are computed, as a (features x rows) block;
``build_features`` wraps it as a frame. The batch job, the online API (history + new events) and
the Spark engine (one tenant per partition, through the batch job's ``score_context``) call
``feature_block``; training, labelling and monitoring call ``build_features``.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract.schema import EVENTS, MESSAGE_CONTEXT, MESSAGES
from features import kernels
from features.coded import Coded, as_objects
from features.definitions import (
    BURST_KEYS,
    FEATURE_NAMES,
    GAP_KEYS,
    HISTORY_LOOKBACK,
    HUMAN_OPEN_AFTER_S,
    LONGEST_WINDOW_S,
    LOOKAHEAD_FEATURES,
    LOOKAHEAD_S,
    WINDOWS_S,
)
from features.enrichment.ip import IpEnricher
from features.enrichment.reference import Reference, load_reference
from features.enrichment.useragent import UaParser

NS = 1_000_000_000
_NAT = np.iinfo(np.int64).min
# Below this many rows the burst kernels run inline: a thread hand-off costs more than it saves.
PARALLEL_FROM = 50_000
_DICT_FACTORIZE_UP_TO = 64
# Columns feature_block reads: the event's own fields plus its message context.
CONTEXT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [c for c in EVENTS.names if c not in ("label", "bot_kind", "url")] + list(MESSAGE_CONTEXT)
    )
)
_KIND = {c.name: c.kind for c in (*EVENTS.columns, *MESSAGES.columns)}
TIMESTAMP_COLUMNS = tuple(c for c in CONTEXT_COLUMNS if _KIND.get(c) == "timestamp")
FLOAT_COLUMNS = tuple(c for c in CONTEXT_COLUMNS if _KIND.get(c) == "int")
_ROW = {name: j for j, name in enumerate(FEATURE_NAMES)}
_WINDOWS_NS = np.asarray(WINDOWS_S, dtype=np.int64) * NS
# The message_history kernel's outputs, in its argument order.
_HISTORY = ("prior", "opens", "clicks", "distinct", "gap", "same_ip", "same_ua", "first_same_ip")
# The message_lookahead kernel's outputs (feature names), in its argument order.
_LOOKAHEAD = LOOKAHEAD_FEATURES


@dataclass
class Enrichers:
    """The IP and User-Agent enrichers, built once per process from the vendored reference."""

    reference: Reference

    @classmethod
    def load(cls) -> Enrichers:
        """Build from the vendored reference data."""
        return cls(load_reference())

    @cached_property
    def ip(self) -> IpEnricher:
        return IpEnricher(self.reference)

    @cached_property
    def ua(self) -> UaParser:
        return UaParser(self.reference)


def event_context(
    messages: pd.DataFrame, events: pd.DataFrame, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """Join clean events with their message's context columns, keeping the events' row order.

    A message is (tenant_id, message_id): two tenants may use the same id. The contract has
    already made that key unique among the clean messages, so the join is a positional lookup
    on integer codes rather than a pandas merge (whose ``validate=`` re-hashed every message
    key: 30% of ``botfilter score``). An event without its message gets missing values, as a
    left join would. ``rows`` is :func:`message_rows` when the caller has it (validation
    does: ``Validated.event_messages``).
    """
    msg_cols = [c for c in MESSAGE_CONTEXT if c not in ("tenant_id", "message_id")]
    if rows is None:
        rows = message_rows(messages, events)
    elif len(rows) != len(events):
        raise ValueError(f"event_context: {len(rows)} message rows for {len(events)} events")
    ctx = events.copy(deep=False)
    for name in msg_cols:
        column = messages[name]
        if isinstance(column.dtype, np.dtype):
            # A NumPy-backed column is taken as its array: pandas' wrapper of it (``.array``)
            # recomputed which of the taken values are missing when the Series was built.
            taken = pd.api.extensions.take(column.to_numpy(copy=False), rows, allow_fill=True)
        else:
            taken = column.array.take(rows, allow_fill=True)
        ctx[name] = pd.Series(taken, index=events.index, copy=False)
    ctx.index = events.index
    return ctx


def message_rows(messages: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """The position in ``messages`` of each event's (tenant_id, message_id); -1 if absent.

    The messages' keys must be unique (the contract guarantees it for clean tables).
    """
    m, e = len(messages), len(events)
    tenants, _ = pd.factorize(
        np.concatenate([_objects(messages["tenant_id"]), _objects(events["tenant_id"])])
    )
    ids, uniques = pd.factorize(
        np.concatenate([_objects(messages["message_id"]), _objects(events["message_id"])])
    )
    # One int64 per (tenant, message_id) pair; a missing part (code -1) never matches.
    keys = tenants.astype(np.int64) * (len(uniques) + 1) + ids
    missing = (tenants < 0) | (ids < 0)
    keys[missing] = -1 - np.arange(int(missing.sum()))  # each unique, none matches a pair
    m_keys, e_keys = keys[:m], keys[m:]
    index = pd.Index(m_keys)
    if not index.is_unique:
        raise ValueError("event_context: (tenant_id, message_id) repeats among the messages")
    rows = index.get_indexer(e_keys)
    rows[e_keys < 0] = -1
    return rows.astype(np.intp, copy=False) if e else np.zeros(0, dtype=np.intp)


def _objects(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=object)


def factorize(values: np.ndarray | Coded) -> tuple[np.ndarray, list]:
    """(int64 codes, distinct values) with code -1 for missing (None, NaN), as pd.factorize.

    Online requests hold a handful of rows, where pd.factorize's fixed cost dominates: those
    go through a dict. Codes only ever name groups, so the two numberings are interchangeable
    (a :class:`Coded` column's are its own, and may name values no row holds).
    """
    if isinstance(values, Coded):
        return values.codes.copy(), list(values.uniques())
    if len(values) > _DICT_FACTORIZE_UP_TO:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return codes.astype(np.int64, copy=False), list(uniques)
    seen: dict = {}
    codes = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        if v is None or v != v:  # v != v: NaN
            codes[i] = -1
        else:
            codes[i] = seen.setdefault(v, len(seen))
    return codes, list(seen)


def _codes(values: np.ndarray | Coded) -> tuple[np.ndarray, int]:
    if isinstance(values, Coded):  # the codes as they are: no distinct value is needed
        codes, n = values.codes.copy(), values.n_codes
    else:
        codes, uniques = factorize(values)
        n = len(uniques)
    codes[codes < 0] = n  # missing values share one code of their own
    return codes, n + 1


def _ns(series: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch; missing becomes INT64 min."""
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        series.dtype
    ):
        # Already typed (the contract's output): no per-element parsing, only a unit change.
        values = (
            series.dt.tz_convert("UTC")
            if series.dt.tz is not None
            else series.dt.tz_localize("UTC")
        )
        return values.dt.as_unit("ns").array.asi8.copy()
    # pandas-stubs omit DatetimeArray.asi8, the int64 view that costs no conversion.
    return pd.to_datetime(series, utc=True).dt.as_unit("ns").array.asi8.copy()  # type: ignore[attr-defined]


def _float(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def context_arrays(ctx: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns :func:`feature_block` reads, as plain arrays.

    Timestamps become int64 ns since the epoch (missing: INT64 min); ``link_count``,
    ``link_position`` and ``asn`` float64 (missing: NaN); ``is_hidden_link`` float64 1/0/NaN;
    every other column an object array of its values. The online API builds the same form
    straight from its stored rows.
    """
    cols: dict[str, np.ndarray] = {}
    for name in CONTEXT_COLUMNS:
        series = ctx[name] if name in ctx else pd.Series([None] * len(ctx), dtype=object)
        if name in TIMESTAMP_COLUMNS:
            cols[name] = _ns(series)
        elif name in FLOAT_COLUMNS:
            cols[name] = _float(series)
        elif name == "is_hidden_link":
            flag = series.astype("boolean")
            cols[name] = flag.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        else:
            cols[name] = series.to_numpy(dtype=object)
    return cols


def context_arrays_arrow(
    events: pa.Table, messages: pa.Table, rows: np.ndarray
) -> dict[str, np.ndarray | Coded | pa.Array]:
    """:func:`context_arrays` of clean Arrow tables (:func:`contract.validate_raw_arrow`): each
    event joined with its message's context, ``rows`` being each event's row in ``messages``
    (-1: none, whose context is missing, as in :func:`event_context`).

    Numbers and timestamps come as :func:`context_arrays` gives them; text as
    :class:`~features.coded.Coded` (Arrow hashes it; no Python object per row), and
    ``event_id`` as Arrow text, which :func:`feature_block` reads only where timestamps tie.
    """
    if len(rows) != events.num_rows:
        raise ValueError(
            f"context_arrays_arrow: {len(rows)} message rows for {events.num_rows} events"
        )
    cols: dict[str, np.ndarray | Coded | pa.Array] = {}
    for name in CONTEXT_COLUMNS:
        own = name in EVENTS.names
        table = events if own else messages
        column = table[name] if name in table.column_names else pa.nulls(table.num_rows)
        if name == "event_id":
            cols[name] = (
                pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], pa.string())
            )
            continue
        values: np.ndarray | Coded
        if name in TIMESTAMP_COLUMNS:
            as_ns = pc.cast(column, pa.timestamp("ns", tz="UTC")).cast(pa.int64())
            values = pc.fill_null(as_ns, _NAT).to_numpy(zero_copy_only=False).astype(np.int64)
            missing = np.array([_NAT], dtype=np.int64)
        elif name in FLOAT_COLUMNS or name == "is_hidden_link":
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
            missing = np.array([np.nan])
        else:
            # a dictionary (validation's CODED columns) is taken as codes as it is
            coded = pa.types.is_dictionary(column.type)
            values = Coded.encode(column if coded else column.cast(pa.string()))
        if not own:  # the message's value at each event's row; -1 reads the spare last slot
            if isinstance(values, Coded):
                values = Coded(np.append(values.codes, -1)[rows], values.dictionary)
            else:
                values = np.append(values, missing)[rows]
        cols[name] = values
    return cols


def _causal_order(tenant: np.ndarray, t: np.ndarray, event_id: np.ndarray) -> np.ndarray:
    # Two stable passes (time, then the few tenant codes) beat a lexsort on large frames.
    by_time = np.argsort(t, kind="stable")
    small = tenant.astype(np.int16 if tenant.max(initial=0) < 2**15 else np.int64)
    order = by_time[np.argsort(small[by_time], kind="stable")]
    ts, tt = t[order], tenant[order]
    same = (ts[1:] == ts[:-1]) & (tt[1:] == tt[:-1])
    if same.any():
        # Equal timestamps are ordered by event_id so every engine agrees on "before".
        tie = np.zeros(len(order), dtype=bool)
        tie[1:] |= same
        tie[:-1] |= same
        tied = order[tie]
        ids = _texts_at(event_id, tied)
        # Python's sort compares str in C; pandas' sorted factorize of objects is several times
        # slower. Equal ids keep their row order either way (both sorts are stable).
        by_id = sorted(range(len(ids)), key=ids.__getitem__)
        rank = np.zeros(len(order), dtype=np.int64)
        rank[tied[by_id]] = np.arange(len(ids))
        order = np.lexsort((rank, t, tenant))
    return order


def _texts_at(values: np.ndarray | pa.Array, rows: np.ndarray) -> list:
    """The values at ``rows`` as a list (Arrow text builds only those rows' strings)."""
    if isinstance(values, pa.Array):
        return values.take(pa.array(rows)).to_pylist()
    return values[rows].tolist()


def _equals(values: np.ndarray | Coded, value: str) -> np.ndarray:
    """Per row, whether the column holds ``value``."""
    if isinstance(values, Coded):
        return values.equals(value)
    return np.asarray(values == value, dtype=bool)


def _missing(values: np.ndarray | Coded) -> np.ndarray:
    if isinstance(values, Coded):
        return values.missing()
    return np.asarray(pd.isna(values), dtype=bool)


def _either(first: np.ndarray | Coded, second: np.ndarray | Coded) -> tuple[np.ndarray, int]:
    """Codes of ``first`` where it is set, else of ``second`` (equal texts share a code,
    whichever column holds them; missing in both: the last code), and how many codes."""
    if not (isinstance(first, Coded) and isinstance(second, Coded)):
        either = np.where(_missing(first), as_objects(second), as_objects(first))
        return _codes(either)
    # one code space for the two dictionaries (campaigns and automations: few per part)
    joint: dict[str, int] = {}
    maps = [
        np.array([joint.setdefault(v, len(joint)) for v in col.uniques()] + [-1], dtype=np.int64)
        for col in (first, second)
    ]
    codes = np.where(first.codes >= 0, maps[0][first.codes], maps[1][second.codes])
    codes[codes < 0] = len(joint)
    return codes, len(joint) + 1


def causal_order(ctx: pd.DataFrame) -> np.ndarray:
    """Positions of ``ctx`` in total order (tenant, occurred_at, event_id)."""
    tenant, _ = _codes(ctx["tenant_id"].to_numpy(dtype=object))
    return _causal_order(tenant, _ns(ctx["occurred_at"]), ctx["event_id"].to_numpy(dtype=object))


def build_features(
    ctx: pd.DataFrame, enrichers: Enrichers, ip: Mapping[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """Compute every feature of ``FEATURES`` for each row of the event-context frame.

    Causal: a row's features use that event and the events before it in (tenant, occurred_at,
    event_id) order within ``ctx``. The result has ``ctx``'s index and row order, float32 columns
    (a view of :func:`feature_block`). ``ip`` is ``enrichers.ip.enrich(ip, asn)`` when the caller
    already has it.
    """
    block = feature_block(context_arrays(ctx), enrichers, ip)
    return pd.DataFrame(block.T, columns=list(FEATURE_NAMES), index=ctx.index, copy=False)


@dataclass
class _Causal:
    """What every grouped kernel shares: the causal order and the row codes in that order."""

    order: np.ndarray  # causal position -> row
    t: np.ndarray  # occurred_at (ns), causal order
    tenant: np.ndarray
    message: np.ndarray
    contact: np.ndarray
    n_message: int
    n_contact: int


def _burst(
    block: np.ndarray,
    c: _Causal,
    key: np.ndarray,
    missing: np.ndarray,
    names: dict[str, str],
    gap: str | None = None,
) -> None:
    """Window counts of one burst key (causal order), written into ``block``; with ``gap``, also
    the seconds since the key's previous event on another message (the same grouping)."""
    codes, uniques = factorize(key)
    perm, group = kernels.group_order(codes.astype(np.int64, copy=False), c.tenant, len(uniques))
    if gap is not None:
        kernels.other_message_gap(
            perm, group, c.t, c.message, LONGEST_WINDOW_S * NS, c.order, missing, block, _ROW[gap]
        )
    out_rows = np.full((len(WINDOWS_S), 3), -1, dtype=np.int64)
    for w, width in enumerate(WINDOWS_S):
        for k, kind in enumerate(("events", "msgs", "contacts")):
            if kind in names:
                out_rows[w, k] = _ROW[names[kind].format(w=width)]
    kernels.window_counts(
        perm,
        group,
        c.t,
        c.message,
        c.contact,
        c.n_message,
        c.n_contact,
        _WINDOWS_NS,
        c.order,
        missing,
        block,
        out_rows,
    )


def feature_block(
    cols: Mapping[str, np.ndarray],
    enrichers: Enrichers,
    ip: Mapping[str, np.ndarray] | None = None,
    *,
    fill: float = np.nan,
) -> np.ndarray:
    """Every feature of ``FEATURE_NAMES`` for each row, as a float32 (features x rows) block.

    ``cols`` is the form :func:`context_arrays` returns. Causal, as :func:`build_features`.
    Large inputs run the burst kernels on a second thread while this one parses User-Agents.
    The block starts as ``fill`` (NaN, missing): a feature some path leaves unwritten reads as
    missing, never as leftover memory; the unit tests pass a sentinel to prove none does.
    """
    n = len(cols["event_id"])
    # One (features x rows) block: each feature is one contiguous row of it.
    block = np.full((len(FEATURE_NAMES), n), fill, dtype=np.float32)
    if n == 0:
        return block
    t, sent, deliv = cols["occurred_at"], cols["sent_at"], cols["delivered_at"]
    is_click = _equals(cols["type"], "click").astype(np.int8)
    link_count = cols["link_count"]
    link_pos = np.where(is_click == 1, cols["link_position"], np.nan)

    # Everything grouped runs in causal order; ``order[i]`` is the row of causal position i.
    tenant, _ = _codes(cols["tenant_id"])
    order = _causal_order(tenant, t, cols["event_id"])
    message, n_msg = _codes(cols["message_id"])
    contact, n_contact = _codes(cols["contact_id"])
    c = _Causal(order, t[order], tenant[order], message[order], contact[order], n_msg, n_contact)

    if ip is None:
        ip = enrichers.ip.enrich(cols["ip"], cols["asn"])
    no_ip = ip["ip_version"] == 0
    no_asn = ip["asn"] == 0
    send_code, n_send = _either(cols["campaign_id"], cols["automation_id"])
    no_send = send_code == n_send - 1
    send_asn = send_code * (int(ip["asn"].max()) + 1) + ip["asn"].astype(np.int64)
    keys = {"ip": ip["ip_key"], "prefix": ip["prefix_key"], "asn": ip["asn"]}
    jobs = [(keys[k], no_asn if k == "asn" else no_ip, k) for k in BURST_KEYS]
    jobs.append((send_asn, no_asn | no_send, "send"))
    bursts = [
        (
            key.astype(np.int64)[order],
            missing,
            {"events": "send_asn_events_{w}s"}
            if name == "send"
            else {k: f"{name}_{k}_{{w}}s" for k in ("events", "msgs", "contacts")},
            f"{name}_secs_since_other_msg" if name in GAP_KEYS else None,
        )
        for key, missing, name in jobs
    ]
    pool = _pool() if n >= PARALLEL_FROM else None
    pending: list[Future[None]] = []

    def burst(job: tuple) -> None:  # on the pool's threads for large inputs, else right here
        if pool is not None:
            pending.append(pool.submit(_burst, block, c, *job))
        else:
            _burst(block, c, *job)

    for job in bursts:
        burst(job)

    # Timing
    with np.errstate(invalid="ignore"):
        block[_ROW["secs_since_delivery"]] = np.where(deliv == _NAT, np.nan, (t - deliv) / NS)
        block[_ROW["secs_since_send"]] = np.where(sent == _NAT, np.nan, (t - sent) / NS)

    # The event itself
    block[_ROW["is_sms"]] = _equals(cols["channel"], "sms")
    block[_ROW["is_click"]] = is_click
    codes, uniques = factorize(cols["http_method"])
    upper = [str(u).upper() for u in uniques]
    lut = np.array(
        [0 if u == "GET" else 1 if u == "HEAD" else 2 for u in upper] + [-1], dtype=np.int8
    )
    block[_ROW["http_method"]] = lut[codes]  # code -1 (missing) picks the trailing -1
    hidden = cols["is_hidden_link"]
    block[_ROW["is_hidden_link"]] = np.where(np.isnan(hidden), -1, hidden)
    block[_ROW["link_position"]] = link_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        block[_ROW["link_position_rel"]] = np.where(link_count > 0, link_pos / link_count, np.nan)
    block[_ROW["link_count"]] = link_count

    # Enrichment
    ua = enrichers.ua.parse(cols["user_agent"])
    # One (address, User-Agent) pair: distinct codes of both, so the pair fits an int64.
    ip_code, _ = _codes(ip["ip_key"])
    pair = ip_code * (int(ua["ua_key"].max(initial=-1)) + 2) + (ua["ua_key"] + 1)
    burst((pair[order], no_ip, {"contacts": "ipua_contacts_{w}s"}, None))
    for name, values in (*ip.items(), *ua.items()):
        if name in _ROW:
            block[_ROW[name]] = values

    # Per-message history
    perm, group = kernels.group_order(c.message, c.tenant, n_msg)
    h = {k: np.empty(n, dtype=np.int64) for k in _HISTORY}
    lp = np.where(np.isnan(link_pos), -1, link_pos).astype(np.int64)
    kernels.message_history(
        perm,
        group,
        c.t,
        is_click[order],
        lp[order],
        ip["ip_key"].astype(np.int64)[order],
        ua["ua_key"][order],
        HISTORY_LOOKBACK,
        order,
        *(h[k] for k in _HISTORY),
    )
    block[_ROW["msg_prior_same_ip"]] = h["same_ip"]
    block[_ROW["msg_prior_same_ua"]] = h["same_ua"]
    block[_ROW["secs_since_msg_first_same_ip"]] = np.where(
        h["first_same_ip"] < 0, np.nan, h["first_same_ip"] / NS
    )
    block[_ROW["msg_prior_events"]] = h["prior"]
    block[_ROW["msg_prior_opens"]] = h["opens"]
    block[_ROW["msg_prior_clicks"]] = h["clicks"]
    block[_ROW["msg_distinct_links"]] = h["distinct"]
    with np.errstate(divide="ignore", invalid="ignore"):
        block[_ROW["msg_link_coverage"]] = np.where(
            link_count > 0, h["distinct"] / link_count, np.nan
        )
    block[_ROW["secs_since_msg_prev_event"]] = np.where(h["gap"] < 0, np.nan, h["gap"] / NS)
    block[_ROW["msg_first_event"]] = h["prior"] == 0
    block[_ROW["click_without_open"]] = (is_click == 1) & (h["opens"] == 0)
    since_first, since_open, late = (np.empty(n, dtype=np.int64) for _ in range(3))
    kernels.message_opens(
        perm,
        group,
        c.t,
        deliv[order],
        is_click[order],
        ip["ip_key"].astype(np.int64)[order],
        HUMAN_OPEN_AFTER_S * NS,
        HISTORY_LOOKBACK,
        order,
        since_first,
        since_open,
        late,
    )
    block[_ROW["secs_since_msg_first_event"]] = since_first / NS
    block[_ROW["secs_since_msg_prev_open"]] = np.where(since_open < 0, np.nan, since_open / NS)
    block[_ROW["msg_prior_late_opens_other_ip"]] = late
    ahead = {k: np.empty(n, dtype=np.int64) for k in _LOOKAHEAD}
    kernels.message_lookahead(
        perm,
        group,
        c.t,
        tenant_horizon(c.tenant, c.t),
        is_click[order],
        lp[order],
        ip["ip_key"].astype(np.int64)[order],
        LOOKAHEAD_S * NS,
        order,
        *ahead.values(),
    )
    for name, values in ahead.items():
        block[_ROW[name]] = np.where(values < 0, np.nan, values / NS)

    for future in pending:
        future.result()
    return block


def tenant_horizon(tenant: np.ndarray, t_ns: np.ndarray) -> np.ndarray:
    """Per row in causal order (tenants contiguous, time ascending within each), the latest
    time of its tenant: how far the data reach for that tenant. Another tenant's data never
    move it (tenants are walls)."""
    n = t_ns.shape[0]
    if n == 0:
        return t_ns.copy()
    last = np.flatnonzero(np.r_[tenant[1:] != tenant[:-1], True])
    return np.repeat(t_ns[last], np.diff(np.r_[-1, last]))


def lookahead_complete(tenant: np.ndarray, t_ns: np.ndarray) -> np.ndarray:
    """Per row (any order), whether its look-ahead window has passed in these rows: the rows
    of its tenant reach ``LOOKAHEAD_S`` past it. Only such a row's score is final; the others
    are provisional, and a later scoring with more data may revise them."""
    codes, _ = _codes(tenant)
    latest = np.full(int(codes.max(initial=-1)) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, codes, t_ns)
    return window_passed(t_ns, latest[codes])


def window_passed(t_ns: np.ndarray, reach_ns: np.ndarray) -> np.ndarray:
    """Whether the look-ahead window of events at ``t_ns`` has passed in data that reach
    ``reach_ns`` (their tenant's latest time): only then is a score final."""
    return t_ns + LOOKAHEAD_S * NS <= reach_ns


def warm_up(enrichers: Enrichers) -> None:
    """Run :func:`feature_block` once on a fixed two-row context (an open, then a click, of one
    message), so that this process has loaded every compiled kernel (numba's cache: about
    0.6 CPU s) and the enrichers' tables before its first real rows. The values are fixed and
    tell nothing of any tenant; below ``PARALLEL_FROM`` rows no thread is started, so a fork
    server may call it before forking its workers, which then inherit all of it."""
    cols: dict[str, np.ndarray] = {}
    for name in CONTEXT_COLUMNS:
        if name in TIMESTAMP_COLUMNS:
            cols[name] = np.array([1_700_000_000 * NS, 1_700_000_060 * NS], dtype=np.int64)
        elif name in FLOAT_COLUMNS or name == "is_hidden_link":
            cols[name] = np.array([1.0, np.nan])
        else:
            cols[name] = np.array(["x", None], dtype=object)
    cols["type"] = np.array(["open", "click"], dtype=object)
    cols["ip"] = np.array(["192.0.2.1", "2001:db8::1"], dtype=object)  # documentation ranges
    cols["user_agent"] = np.array(["Mozilla/5.0", None], dtype=object)
    feature_block(cols, enrichers)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    # The burst kernels release the GIL; two threads match this machine's cores and the default
    # numba threading of the scorer. Created on first large call, never at import.
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="bursts")
