"""The metric definitions of PRODUCT.md, once: a declarative spec plus pure pandas functions.

How the numbers are built (every engine follows these steps; see jobs/README.md):

1. **Window.** Messages with ``sent_at`` in ``[as_of - days, as_of)`` count; their events count when
   ``occurred_at < as_of`` and the message was delivered. Stored partitions are whole UTC send
   dates, so the engine also computes the part of the first send date that lies before the window
   start and marks it ``in_window = False``: it goes to the store (whose partitions never hold half
   a day) but not into the window's tables.
2. **Event status.** ``is_bot`` comes from the scores; ``filter_on`` is the tenant's setting for the
   message's channel. :data:`STATUSES` turns both into the masks ``counted`` (not left out by the
   filter), ``excluded`` (left out by the filter), ``all``, ``human`` and ``bot``.
3. **Counts.** Each :class:`Count` is an event-type set, a status and a grain: ``events`` counts
   matching events, ``messages`` counts messages (or message-days, for the dashboard) with at least
   one matching event, ``delivered`` counts delivered messages. A message belongs to exactly one
   send date, so all of these are additive across send-date partitions.
4. **Partitions.** Counts are summed per (tenant_id, channel, send_date) and module key
   (:data:`MODULES`): campaign, automation, segment (messages to the segment's contacts), the
   activity date (dashboard: delivered by the date of ``delivered_at``, events by the date of
   ``occurred_at``) and, for the report, recipient domain and bot kind.
5. **Tables.** :func:`rollup` sums partitions and derives the :data:`RATES` from the sums; open
   columns are empty for SMS; ``bot_filter_applied`` holds when every summed partition was computed
   with the filter on.

Status and type predicates are written with ``&``, ``~`` and ``isin`` only, so the same callables
build pandas/numpy masks and Spark ``Column`` expressions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from botfilter.errors import BotfilterError
from contract.schema import CHANNELS, EVENT_TYPES, MESSAGE_CONTEXT

DAY_NS = 86_400 * 10**9
EPOCH = date(1970, 1, 1)
SMS = "sms"

# --- the spec ---------------------------------------------------------------------------------

StatusFn = Callable[[Any, Any], Any]

#: Event statuses as functions of (is_bot, filter_on); both may be numpy/pandas booleans or Spark
#: Columns. ``filter_on`` is the tenant's "exclude bots" setting for the message's channel.
STATUSES: dict[str, StatusFn] = {
    "counted": lambda is_bot, filter_on: ~(filter_on & is_bot),
    "excluded": lambda is_bot, filter_on: filter_on & is_bot,
    "all": lambda is_bot, filter_on: is_bot | ~is_bot,
    "human": lambda is_bot, filter_on: ~is_bot,
    "bot": lambda is_bot, filter_on: is_bot,
}

Grain = Literal["delivered", "events", "messages"]


@dataclass(frozen=True)
class Count:
    """One additive counted column of a partition.

    ``grain``: ``delivered`` = delivered messages; ``events`` = events of ``types`` with ``status``;
    ``messages`` = messages (message-days on the dashboard) with at least one such event.
    """

    name: str
    grain: Grain
    types: tuple[str, ...] = ()
    status: str = "counted"
    email_only: bool = False  # empty (null) for SMS: SMS has no opens
    description: str = ""


@dataclass(frozen=True)
class Rate:
    """A ratio of two summed counts; empty where the denominator is 0."""

    name: str
    numerator: str
    denominator: str
    email_only: bool = False


COUNTS: dict[str, Count] = {
    c.name: c
    for c in (
        Count("delivered", "delivered", description="messages with delivered_at set"),
        Count("opens_total", "events", ("open",), "counted", True, "counted open events"),
        Count(
            "opens_unique",
            "messages",
            ("open", "click"),
            "counted",
            True,
            "messages with a counted open or click (a click implies an open)",
        ),
        Count("clicks_total", "events", ("click",), "counted", False, "counted click events"),
        Count("clicks_unique", "messages", ("click",), "counted", False, "messages clicked"),
        Count("bot_opens_excluded", "events", ("open",), "excluded", True, "opens filtered out"),
        Count("bot_clicks_excluded", "events", ("click",), "excluded", False, "clicks filtered"),
        # Both sides of the comparison the reports show, whatever the setting is.
        Count("opens_total_all", "events", ("open",), "all", True),
        Count("opens_unique_all", "messages", ("open", "click"), "all", True),
        Count("clicks_total_all", "events", ("click",), "all", False),
        Count("clicks_unique_all", "messages", ("click",), "all", False),
        Count("opens_total_human", "events", ("open",), "human", True),
        Count("opens_unique_human", "messages", ("open", "click"), "human", True),
        Count("clicks_total_human", "events", ("click",), "human", False),
        Count("clicks_unique_human", "messages", ("click",), "human", False),
        # Report breakdown by bot kind and recipient domain (event grain only).
        Count("bot_opens", "events", ("open",), "bot", True),
        Count("bot_clicks", "events", ("click",), "bot", False),
    )
}

RATES: dict[str, Rate] = {
    r.name: r
    for r in (
        Rate("open_rate", "opens_unique", "delivered", True),
        Rate("ctr", "clicks_unique", "delivered"),
        Rate("click_to_open_rate", "clicks_unique", "opens_unique", True),
        Rate("open_rate_all", "opens_unique_all", "delivered", True),
        Rate("open_rate_human", "opens_unique_human", "delivered", True),
        Rate("ctr_all", "clicks_unique_all", "delivered"),
        Rate("ctr_human", "clicks_unique_human", "delivered"),
    )
}

PRODUCT_COUNTS = ("delivered", "opens_total", "opens_unique", "clicks_total", "clicks_unique")
PRODUCT_RATES = ("open_rate", "ctr", "click_to_open_rate")
EXCLUDED_COUNTS = ("bot_opens_excluded", "bot_clicks_excluded")
COMPARISON_COUNTS = tuple(f"{m}_{side}" for side in ("all", "human") for m in PRODUCT_COUNTS[1:])
COMPARISON_RATES = ("open_rate_all", "open_rate_human", "ctr_all", "ctr_human")
MESSAGE_COUNTS = PRODUCT_COUNTS + EXCLUDED_COUNTS + COMPARISON_COUNTS

#: Key of a stored partition. ``in_window`` and ``bot_filter_applied`` ride along in computed rows.
PARTITION_KEY = ("tenant_id", "channel", "send_date")
# Input columns the computation reads (everything else is left alone, not copied).
MESSAGE_COLUMNS = tuple(c for c in MESSAGE_CONTEXT if c != "link_count")
EVENT_COLUMNS = ("event_id", "tenant_id", "message_id", "type", "occurred_at", "bot_kind")

ModuleGrain = Literal["message", "segment", "day", "event"]


@dataclass(frozen=True)
class Module:
    """A metrics table: partition rows grouped by ``keys`` (besides tenant and channel)."""

    table: str
    keys: tuple[str, ...]
    grain: ModuleGrain
    counts: tuple[str, ...] = MESSAGE_COUNTS
    rates: tuple[str, ...] = PRODUCT_RATES + COMPARISON_RATES
    product: bool = True  # one of the four tables of PRODUCT.md
    description: str = ""

    @property
    def partition_columns(self) -> list[str]:
        """Columns of a stored partition row."""
        return [*PARTITION_KEY, *self.keys, *self.counts, "bot_filter_applied"]

    @property
    def computed_columns(self) -> list[str]:
        """Columns of a freshly computed partition row (stored ones plus ``in_window``)."""
        return [*PARTITION_KEY, *self.keys, "in_window", *self.counts, "bot_filter_applied"]

    def table_columns(self, comparison: bool = False) -> list[str]:
        """Columns of the module table: PRODUCT.md's, plus both sides if ``comparison``."""
        cols = ["tenant_id", *self.keys, "channel"]
        if self.counts != MESSAGE_COUNTS:
            return [*cols, *self.counts, "bot_filter_applied"]
        cols += [*PRODUCT_COUNTS, *PRODUCT_RATES, *EXCLUDED_COUNTS, "bot_filter_applied"]
        if comparison:
            cols += [*COMPARISON_COUNTS, *COMPARISON_RATES]
        return cols


MODULES: dict[str, Module] = {
    m.table: m
    for m in (
        Module("campaign_metrics", ("campaign_id",), "message", description="per campaign"),
        Module("automation_metrics", ("automation_id",), "message", description="per automation"),
        Module(
            "segment_metrics",
            ("segment_id",),
            "segment",
            description="messages to the segment's contacts",
        ),
        Module(
            "dashboard_daily",
            ("date",),
            "day",
            description="delivered by UTC date of delivered_at; events by UTC date of occurred_at",
        ),
        Module(
            "channel_totals",
            (),
            "message",
            product=False,
            description="all messages of the channel (report and metrics show)",
        ),
        Module(
            "bot_interactions",
            ("recipient_domain", "bot_kind"),
            "event",
            counts=("bot_opens", "bot_clicks", *EXCLUDED_COUNTS),
            rates=(),
            product=False,
            description="bot events by recipient domain and bot kind (report)",
        ),
    )
}
PRODUCT_TABLES = tuple(name for name, m in MODULES.items() if m.product)
NO_DOMAIN = "(none)"
UNKNOWN_KIND = "unknown"


def status_mask(status: str, is_bot: Any, filter_on: Any) -> Any:
    """The status predicate over ``is_bot`` and ``filter_on`` (numpy, pandas or Spark)."""
    return STATUSES[status](is_bot, filter_on)


def count_mask(count: Count, event_type: Any, is_bot: Any, filter_on: Any) -> Any:
    """Events matching ``count``: its types and its status. ``event_type`` has ``isin``."""
    return event_type.isin(list(count.types)) & status_mask(count.status, is_bot, filter_on)


# --- window -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """``[start, end)`` of send times; events count before ``end`` (the as-of time)."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def ending(cls, as_of: pd.Timestamp | str | None = None, days: int = 30) -> Window:
        """The ``days``-day window ending at ``as_of`` (default: now)."""
        end = to_utc(as_of) if as_of is not None else pd.Timestamp.now(tz="UTC")
        return cls(end - pd.Timedelta(days=days), end)

    @property
    def first_date(self) -> date:
        """First send date the window touches (stored whole)."""
        return self.start.date()

    @property
    def last_date(self) -> date:
        """Last send date the window touches."""
        return (self.end - pd.Timedelta(1, "ns")).date()

    @property
    def stored_start(self) -> pd.Timestamp:
        """Start of the first send date: stored partitions are whole days."""
        return self.start.floor("D")

    def send_dates(self) -> list[date]:
        """Every send date whose partition a recompute of this window rewrites."""
        n = (self.last_date - self.first_date).days + 1
        return [self.first_date + timedelta(days=i) for i in range(max(n, 0))]


def to_utc(value: pd.Timestamp | str) -> pd.Timestamp:
    """A UTC timestamp; a value without an offset is UTC (PRODUCT.md)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise BotfilterError(f"cannot read {value!r} as a timestamp (use ISO-8601)") from exc
    if ts is pd.NaT:
        raise BotfilterError(f"cannot read {value!r} as a timestamp (use ISO-8601)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# --- computing partitions ---------------------------------------------------------------------


@dataclass
class Partitions:
    """Freshly computed partition rows of every module, plus one summary row per partition."""

    window: Window
    frames: dict[str, pd.DataFrame]
    summary: pd.DataFrame  # PARTITION_KEY + bot_filter_applied, messages, delivered, events
    events_used: int = 0
    model_versions: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    channels: tuple[str, ...] = CHANNELS

    def stored(self, table: str) -> pd.DataFrame:
        """Rows as the store keeps them: ``in_window`` summed out (whole send dates)."""
        return stored_rows(self.frames[table], MODULES[table])

    def tables(self, comparison: bool = False) -> dict[str, pd.DataFrame]:
        """The window's four PRODUCT.md tables (rows of the exact window only)."""
        return {
            name: rollup(window_rows(self.frames[name]), MODULES[name], comparison)
            for name in PRODUCT_TABLES
        }


class MissingScores(BotfilterError):
    """Events that need a score have none."""


def _utc_ns(series: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (UTC) of a tz-aware timestamp column; NaT -> min int."""
    values = series.dt.tz_convert("UTC") if series.dt.tz is not None else series
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _exclusion_lookup(
    tenant: np.ndarray, channel: np.ndarray, exclusions: Mapping[tuple[str, str], bool]
) -> np.ndarray:
    """Per-row ``filter_on`` from a {(tenant, channel): bool} map (missing = off)."""
    codes, labels = _key(tenant)
    return _filter_by_codes((codes, labels), channel, exclusions)


def _filter_by_codes(
    tenant: Key, channel: np.ndarray, exclusions: Mapping[tuple[str, str], bool]
) -> np.ndarray:
    codes, labels = tenant
    table = np.array(
        [[bool(exclusions.get((t, c), False)) for c in CHANNELS] for t in labels], dtype=bool
    ).reshape(len(labels), len(CHANNELS))
    ch = np.searchsorted(np.array(CHANNELS), channel)
    return table[codes, ch]


def _message_positions(messages: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Row of each event's message in ``messages`` (-1 if none), matched on tenant and message."""
    m_ids = messages["message_id"].to_numpy(dtype=object)
    e_ids = events["message_id"].to_numpy(dtype=object)
    m_tenant = messages["tenant_id"].to_numpy(dtype=object)
    e_tenant = events["tenant_id"].to_numpy(dtype=object)
    index = pd.Index(m_ids)
    if not index.is_unique:  # the same message_id in two tenants: match on both
        index = pd.Index(pd.Series(m_tenant) + "\x1f" + pd.Series(m_ids))
        return index.get_indexer(pd.Series(e_tenant) + "\x1f" + pd.Series(e_ids))
    pos = index.get_indexer(e_ids)
    ok = np.flatnonzero(pos >= 0)
    pos[ok[m_tenant[pos[ok]] != e_tenant[ok]]] = -1
    return pos


def _score_positions(scores: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Row of each event's score in ``scores`` (-1 if none): matched on (tenant_id, event_id)
    when the scores carry tenant_id (event ids are unique within a tenant only), else on
    event_id, which must then name one event."""
    e_ids = events["event_id"].to_numpy(dtype=object)
    if "tenant_id" in scores.columns:
        index = pd.MultiIndex.from_arrays([scores["tenant_id"], scores["event_id"]])
        return index.get_indexer(pd.MultiIndex.from_arrays([events["tenant_id"], e_ids]))
    index = pd.Index(scores["event_id"].to_numpy(dtype=object))
    if not index.is_unique:
        raise BotfilterError(
            f"event_id {index[index.duplicated()][0]!r} is scored more than once and the "
            "scores have no tenant_id to tell its tenants apart"
        )
    return index.get_indexer(e_ids)


def parse_reasons(value: Any) -> list[str]:
    """Reasons as a list of names, from a list, an array, JSON text or comma-separated text."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(v) for v in json.loads(text)]
        return [p.strip() for p in text.replace("|", ",").split(",") if p.strip()]
    return [str(v) for v in value]


def top_reasons(values: Any) -> np.ndarray:
    """The strongest reason of each scores row (None when it has none), vectorised for Arrow
    list columns; lists, arrays and text (JSON or comma-separated) work too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.ArrowDtype):
        arr = pa.chunked_array(pa.array(values)).combine_chunks()
        first = pc.list_slice(arr, 0, 1)
        out = np.full(len(arr), None, dtype=object)
        out[pc.list_parent_indices(first).to_numpy()] = pc.list_flatten(first).to_numpy(
            zero_copy_only=False
        )
        return out
    items = np.asarray(values, dtype=object)
    if any(isinstance(v, str) for v in items):
        return np.array([(r[0] if r else None) for r in map(parse_reasons, items)], dtype=object)
    return np.array([None if v is None or len(v) == 0 else str(v[0]) for v in items], object)


def first_reason(values: Iterable[Any]) -> list[str | None]:
    """The strongest reason of each scores row, or None."""
    return list(top_reasons(list(values) if not isinstance(values, pd.Series) else values))


def _bot_kinds(events: pd.DataFrame, top: np.ndarray | None) -> np.ndarray:
    """Kind of each bot event: the label's ``bot_kind``, else its top reason, else unknown."""
    n = len(events)
    kinds = np.full(n, UNKNOWN_KIND, dtype=object)
    labelled = np.zeros(n, dtype=bool)
    if "bot_kind" in events.columns:
        label = events["bot_kind"].to_numpy(dtype=object)
        labelled = pd.notna(label)
        kinds[labelled] = label[labelled]
    if top is not None and not labelled.all():
        rest = np.flatnonzero(~labelled)
        reason = pd.Series(top[rest], dtype=object)
        has = reason.notna().to_numpy()
        kinds[rest[has]] = ("reason:" + reason[has]).to_numpy(dtype=object)
    return kinds


Key = tuple[np.ndarray, np.ndarray]  # (codes >= 0, or -1 for missing; labels[code] = value)


def _key(values: np.ndarray) -> Key:
    """Sorted integer codes of a column (missing -> -1) and the values they stand for."""
    codes, labels = pd.factorize(pd.Series(values, dtype=object), sort=True)
    return codes.astype(np.int64), np.asarray(labels, dtype=object)


def _take(key: Key, rows: np.ndarray) -> Key:
    return key[0][rows], key[1]


def _group_sum(keys: dict[str, Key], values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Sum ``values`` per combination of ``keys``; rows with a missing key belong to no group.

    Rows come out sorted by the keys in order (codes are sorted factorizations). Integer codes
    and bincount keep this fast on millions of rows.
    """
    codes = [k[0] for k in keys.values()]
    sizes = [max(len(k[1]), 1) for k in keys.values()]
    valid = np.ones(len(codes[0]), dtype=bool)
    for c in codes:
        valid &= c >= 0
    if valid.all():  # no copies when every row belongs to a group
        valid = slice(None)
    if int(np.prod([float(x) for x in sizes])) < 2**62:
        combined = np.zeros(len(codes[0][valid]), dtype=np.int64)
        for c, size in zip(codes, sizes, strict=True):
            combined = combined * size + c[valid]
        # Hashing beats sorting millions of rows; only the (few) groups get sorted.
        inverse, groups = pd.factorize(combined, sort=True)
        decoded = []
        for size in reversed(sizes):
            decoded.append(groups % size)
            groups = groups // size
        decoded.reverse()
    else:  # too many combinations for one int64: let pandas number the groups
        frame = pd.DataFrame({i: c[valid] for i, c in enumerate(codes)})
        grouped = frame.groupby(list(frame.columns), sort=True)
        inverse = grouped.ngroup().to_numpy()
        first = grouped.head(1).index.to_numpy()
        order = np.argsort(inverse[first], kind="stable")
        decoded = [frame[i].to_numpy()[first][order] for i in frame.columns]
    n_groups = len(decoded[0])
    out = {name: key[1][d] for (name, key), d in zip(keys.items(), decoded, strict=True)}
    for name, v in values.items():
        summed = np.bincount(inverse, weights=v[valid], minlength=n_groups)
        out[name] = np.rint(summed).astype(np.int64)
    return pd.DataFrame(out)


def compute_partitions(
    messages: pd.DataFrame,
    events: pd.DataFrame,
    scores: pd.DataFrame,
    exclusions: Mapping[tuple[str, str], bool],
    window: Window,
    segments: pd.DataFrame | None = None,
    tenants: Sequence[str] | None = None,
    channels: Sequence[str] = CHANNELS,
) -> Partitions:
    """Partition rows of every module for the window's send dates (pure, pandas/numpy).

    ``messages``/``events``/``segments`` are contract-clean frames, ``scores`` has ``event_id``,
    ``is_bot`` and optionally ``reasons``/``model_version``; ``exclusions`` maps
    (tenant_id, channel) to the "exclude bots" setting. Only ``tenants`` (default: all in
    ``messages``) and ``channels`` are computed. Raises :class:`MissingScores` when a counted event
    has no score.
    """
    sent = _utc_ns(messages["sent_at"])
    keep = (sent >= window.stored_start.value) & (sent < window.end.value)
    if set(channels) != set(CHANNELS):
        keep &= messages["channel"].isin(list(channels)).to_numpy()
    if tenants is not None and len(set(tenants)) == 1:
        keep &= (messages["tenant_id"] == next(iter(tenants))).to_numpy()
    elif tenants is not None:
        keep &= messages["tenant_id"].isin(list(tenants)).to_numpy()
    columns = [c for c in MESSAGE_COLUMNS if c in messages.columns]
    m = messages.loc[keep, columns].reset_index(drop=True)
    sent = sent[keep]
    n = len(m)
    tenant = m["tenant_id"].to_numpy(dtype=object)
    channel = m["channel"].to_numpy(dtype=object)
    delivered_ns = _utc_ns(m["delivered_at"]) if n else np.zeros(0, np.int64)
    delivered = m["delivered_at"].notna().to_numpy()
    if tenants is not None and len(set(tenants)) == 1:  # one tenant: no need to hash the column
        tenant_key: Key = (np.zeros(n, dtype=np.int64), np.array(list(set(tenants)), dtype=object))
    else:
        tenant_key = _key(tenant)
    filter_on = _filter_by_codes(tenant_key, channel, exclusions)

    # Events of delivered window messages, before as_of; everything else does not count.
    pos = _message_positions(m, events)
    occurred = _utc_ns(events["occurred_at"])
    ok = pos >= 0
    ok[ok] &= delivered[pos[ok]]
    ok &= occurred < window.end.value
    ev = events.loc[ok, [c for c in EVENT_COLUMNS if c in events.columns]]
    pos = pos[ok]
    occurred = occurred[ok]

    score_pos = _score_positions(scores, ev)
    missing = score_pos < 0
    if missing.any():
        example = ev["event_id"].to_numpy(dtype=object)[missing][0]
        raise MissingScores(
            f"{int(missing.sum())} events have no score (e.g. event_id {example!r}); "
            "score them or pass a scores file covering them"
        )
    is_bot = scores["is_bot"].to_numpy(dtype=bool)[score_pos]
    # Categorical: ``isin`` on codes, not on millions of strings (once per count).
    etype = pd.Series(pd.Categorical(ev["type"].to_numpy(dtype=object), categories=EVENT_TYPES))
    masks = {
        name: np.asarray(count_mask(c, etype, is_bot, filter_on[pos]), dtype=bool)
        for name, c in COUNTS.items()
        if c.grain != "delivered"
    }

    # The partition of each message as integer codes: tenant, channel, send date, in window.
    day0 = window.stored_start.value // DAY_NS
    ndays = len(window.send_dates())
    part = {
        "tenant_id": tenant_key,
        "channel": (
            np.searchsorted(np.array(CHANNELS), channel).astype(np.int64),
            np.array(CHANNELS, dtype=object),
        ),
        "send_day": (sent // DAY_NS - day0, np.arange(day0, day0 + ndays)),
    }
    in_window: Key = ((sent >= window.start.value).astype(np.int64), np.array([False, True]))

    def per_message(name: str) -> np.ndarray:
        counts = np.bincount(pos[masks[name]], minlength=n)
        return counts if COUNTS[name].grain == "events" else (counts > 0).astype(np.int64)

    msg_values = {"delivered": delivered.astype(np.int64)}
    msg_values |= {name: per_message(name) for name in MESSAGE_COUNTS[1:]}

    frames: dict[str, pd.DataFrame] = {}
    for table, module in MODULES.items():
        if module.grain == "message":  # grouped by message columns (campaign, automation, none)
            keys = part | {k: _key(m[k].to_numpy(dtype=object)) for k in module.keys}
            frames[table] = _group_sum(keys | {"in_window": in_window}, msg_values)
    frames["segment_metrics"] = _segment_rows(m, segments, part, in_window, msg_values)
    frames["dashboard_daily"] = _day_rows(
        part, in_window, delivered, delivered_ns, pos, occurred, masks
    )
    frames["bot_interactions"] = _event_rows(m, ev, scores, score_pos, part, in_window, pos, masks)
    for frame in frames.values():
        frame["bot_filter_applied"] = _exclusion_lookup(
            frame["tenant_id"].to_numpy(dtype=object),
            frame["channel"].to_numpy(dtype=object),
            exclusions,
        )

    summary = _group_sum(
        part,
        {
            "messages": np.ones(n, dtype=np.int64),
            "delivered": msg_values["delivered"],
            "events": np.bincount(pos, minlength=n),
        },
    )
    versions: tuple[str, ...] = ()
    if "model_version" in scores.columns and len(score_pos):
        versions = tuple(sorted(pd.unique(scores["model_version"].to_numpy()[score_pos])))
    scope = tuple(tenants) if tenants is not None else tuple(sorted(set(tenant)))
    return Partitions(
        window=window,
        frames={name: _finish(frame, MODULES[name]) for name, frame in frames.items()},
        summary=summary_grid(summary, window, scope, channels, exclusions),
        events_used=int(len(ev)),
        model_versions=versions,
        tenants=scope,
        channels=tuple(channels),
    )


def _segment_rows(
    m: pd.DataFrame,
    segments: pd.DataFrame | None,
    part: dict[str, Key],
    in_window: Key,
    msg_values: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Per-message counts, once for every segment the recipient belongs to."""
    if segments is None or segments.empty or m.empty:
        names = [*part, "segment_id", "in_window", *msg_values]
        return pd.DataFrame({c: np.array([], dtype=np.int64) for c in names})
    members = segments[["tenant_id", "segment_id", "contact_id"]].drop_duplicates()
    # One code space for (tenant, contact) on both sides, then a sorted-range join.
    tenants = pd.factorize(np.concatenate([m["tenant_id"], members["tenant_id"]]))[0]
    contacts, uniques = pd.factorize(np.concatenate([m["contact_id"], members["contact_id"]]))
    codes = tenants.astype(np.int64) * max(len(uniques), 1) + contacts
    msg_contact, seg_contact = codes[: len(m)], codes[len(m) :]
    # Codes are dense: a counting sort gives each contact's run of memberships in O(n).
    order = np.argsort(seg_contact, kind="stable")
    per_contact = np.bincount(seg_contact, minlength=int(codes.max()) + 1)
    first = np.cumsum(per_contact) - per_contact
    left = first[msg_contact]
    count = per_contact[msg_contact]
    msg_rows = np.repeat(np.arange(len(m)), count)
    offsets = np.arange(len(msg_rows)) - np.repeat(np.cumsum(count) - count, count)
    seg_rows = order[np.repeat(left, count) + offsets]
    keys = {k: _take(v, msg_rows) for k, v in part.items()}
    segment = _key(members["segment_id"].to_numpy(dtype=object))
    keys["segment_id"] = _take(segment, seg_rows)
    keys["in_window"] = _take(in_window, msg_rows)
    return _group_sum(keys, {k: v[msg_rows] for k, v in msg_values.items()})


def _day_rows(
    part: dict[str, Key],
    in_window: Key,
    delivered: np.ndarray,
    delivered_ns: np.ndarray,
    pos: np.ndarray,
    occurred: np.ndarray,
    masks: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Dashboard rows: delivered by delivery date, events by event date (uniques per day)."""
    d = np.flatnonzero(delivered)
    rows = [d]
    days = [delivered_ns[d] // DAY_NS]
    values = {"delivered": [np.ones(len(d), dtype=np.int64)]}
    values |= {name: [np.zeros(len(d), dtype=np.int64)] for name in MESSAGE_COUNTS[1:]}
    if len(pos):
        # A (message, event date) pair is one "message-day": uniques count these pairs.
        day = occurred // DAY_NS
        lo = int(day.min())
        span = int(day.max()) - lo + 1
        inverse, pair = pd.factorize(pos.astype(np.int64) * span + (day - lo))
        rows.append(pair // span)
        days.append(pair % span + lo)
        values["delivered"].append(np.zeros(len(pair), dtype=np.int64))
        for name in MESSAGE_COUNTS[1:]:
            counts = np.bincount(inverse[masks[name]], minlength=len(pair))
            grain_events = COUNTS[name].grain == "events"
            values[name].append(counts if grain_events else (counts > 0).astype(np.int64))
    msg_rows = np.concatenate(rows)
    day_values = np.concatenate(days).astype(np.int64)
    first = int(day_values.min()) if len(day_values) else 0
    span = int(day_values.max()) - first + 1 if len(day_values) else 1
    keys = {k: _take(v, msg_rows) for k, v in part.items()}
    keys["day"] = (day_values - first, np.arange(first, first + span))
    keys["in_window"] = _take(in_window, msg_rows)
    return _group_sum(keys, {k: np.concatenate(v) for k, v in values.items()})


def _event_rows(
    m: pd.DataFrame,
    ev: pd.DataFrame,
    scores: pd.DataFrame,
    score_pos: np.ndarray,
    part: dict[str, Key],
    in_window: Key,
    pos: np.ndarray,
    masks: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Bot events by recipient domain and bot kind."""
    module = MODULES["bot_interactions"]
    bot = np.flatnonzero(masks["bot_opens"] | masks["bot_clicks"])
    rows = pos[bot]
    domain = m["recipient_domain"].to_numpy(dtype=object)[rows]
    top = None
    if "top_reason" in scores.columns:  # stored scores carry it; no list column to unpack
        top = scores["top_reason"].to_numpy(dtype=object)[score_pos[bot]]
    elif "reasons" in scores.columns:
        top = top_reasons(scores["reasons"])[score_pos[bot]]
    keys = {k: _take(v, rows) for k, v in part.items()}
    keys["recipient_domain"] = _key(np.where(pd.isna(domain), NO_DOMAIN, domain))
    keys["bot_kind"] = _key(_bot_kinds(ev.iloc[bot], top))
    keys["in_window"] = _take(in_window, rows)
    return _group_sum(keys, {name: masks[name][bot].astype(np.int64) for name in module.counts})


def _days_to_dates(days: pd.Series | np.ndarray) -> np.ndarray:
    """Day numbers since the epoch as ``datetime.date`` objects."""
    values = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    return np.array(values.tolist(), dtype=object)


def _finish(frame: pd.DataFrame, module: Module) -> pd.DataFrame:
    """Column names, order, dtypes and SMS nulls of computed partition rows."""
    sms = frame["channel"].to_numpy(dtype=object) == SMS
    cols: dict[str, Any] = {}
    for col in module.computed_columns:
        if col in ("send_date", "date"):
            source = frame["send_day" if col == "send_date" else "day"]
            cols[col] = _days_to_dates(source) if len(frame) else np.array([], dtype=object)
        elif col in ("in_window", "bot_filter_applied"):
            cols[col] = frame[col].to_numpy(dtype=bool)
        elif col in COUNTS:
            values = frame[col].to_numpy(dtype=np.int64)
            cols[col] = (
                pd.arrays.IntegerArray(values, sms.copy()) if COUNTS[col].email_only else values
            )
        else:
            cols[col] = frame[col].to_numpy(dtype=object)
    return pd.DataFrame(cols)


def summary_grid(
    summary: pd.DataFrame,
    window: Window,
    tenants: Sequence[str],
    channels: Sequence[str],
    exclusions: Mapping[tuple[str, str], bool],
) -> pd.DataFrame:
    """One ``metric_partitions`` row per (tenant, channel, send date) of the window, empty ones
    included, from counts per partition (``send_day`` = days since the epoch, or ``send_date``;
    columns messages, delivered, events)."""
    grid = pd.MultiIndex.from_product(
        [list(tenants), list(channels), window.send_dates()], names=list(PARTITION_KEY)
    ).to_frame(index=False)
    if "send_day" in summary.columns:
        summary = summary.rename(columns={"send_day": "send_date"})
        summary["send_date"] = _days_to_dates(summary["send_date"]) if len(summary) else []
    out = grid.merge(summary, on=list(PARTITION_KEY), how="left").fillna(0)
    for col in ("messages", "delivered", "events"):
        out[col] = out[col].astype(np.int64)
    pairs = zip(out["tenant_id"], out["channel"], strict=True)
    out["bot_filter_applied"] = [bool(exclusions.get(p, False)) for p in pairs]
    return out


def coerce(frame: pd.DataFrame, module: Module) -> pd.DataFrame:
    """The spec's dtypes for whichever of a module's columns ``frame`` has.

    Counts are int64 (nullable Int64 for open columns, empty for SMS), rates float64 (NaN where
    empty), dates ``datetime.date``, ``bot_filter_applied``/``in_window`` bool.
    """
    out = frame.copy()
    for col in out.columns:
        if col in COUNTS:
            kind = "Int64" if COUNTS[col].email_only else np.int64
            out[col] = pd.to_numeric(out[col]).astype(kind)
        elif col in RATES:
            out[col] = pd.to_numeric(out[col]).astype(np.float64)
        elif col in ("bot_filter_applied", "in_window"):
            out[col] = out[col].astype(bool)
        elif col in ("send_date", "date") and len(out):
            out[col] = [pd.Timestamp(v).date() for v in out[col]]
    if "channel" in out.columns:
        sms = (out["channel"] == SMS).to_numpy()
        for col in out.columns:
            spec = COUNTS.get(col) or RATES.get(col)
            if spec is not None and spec.email_only:
                out[col] = out[col].mask(sms)
    return out


# --- from partitions to tables ----------------------------------------------------------------


def stored_rows(frame: pd.DataFrame, module: Module) -> pd.DataFrame:
    """Computed rows summed over ``in_window``: whole send dates, as the store keeps them."""
    keys = [*PARTITION_KEY, *module.keys, "bot_filter_applied"]
    out = _sum(frame, keys, module)
    return out.reindex(columns=module.partition_columns)


def window_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Computed rows of messages sent inside the window proper."""
    return frame.loc[frame["in_window"].astype(bool)]


def _sum(frame: pd.DataFrame, keys: list[str], module: Module) -> pd.DataFrame:
    """Sum a module's counts by ``keys``, keeping open columns empty for SMS groups."""
    counts = list(module.counts)
    if frame.empty:
        return frame.reindex(columns=[*keys, *counts]).reset_index(drop=True)
    grouped = frame.groupby(keys, sort=True, dropna=False, observed=True)[counts]
    out = grouped.sum(min_count=1).reset_index()
    for name in counts:
        if COUNTS[name].email_only:
            out[name] = out[name].astype("Int64")
        else:
            out[name] = out[name].fillna(0).astype(np.int64)
    return out


def rollup(partitions: pd.DataFrame, module: Module, comparison: bool = False) -> pd.DataFrame:
    """A module table from partition rows: summed counts, rates from the sums.

    Works on computed or stored rows (any set of send dates): the counts are additive across
    partitions, ``bot_filter_applied`` is true when it was true for every summed partition.
    """
    keys = ["tenant_id", *module.keys, "channel"]
    frame = partitions.assign(bot_filter_applied=partitions["bot_filter_applied"].astype(bool))
    out = _sum(frame.drop(columns="bot_filter_applied"), keys, module)
    if frame.empty:
        out["bot_filter_applied"] = pd.Series(dtype=bool)
    else:
        applied = frame.groupby(keys, sort=True, dropna=False)["bot_filter_applied"].all()
        out["bot_filter_applied"] = applied.to_numpy(dtype=bool)
    for name in module.rates:
        rate = RATES[name]
        num = out[rate.numerator].astype("float64")
        den = out[rate.denominator].astype("float64")
        out[name] = num / den.where(den > 0)
    return out.reindex(columns=module.table_columns(comparison)).reset_index(drop=True)
