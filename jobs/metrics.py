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
from contract.schema import CHANNELS

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
    codes, uniques = pd.factorize(pd.Series(tenant, dtype=object))
    ch = np.searchsorted(np.array(CHANNELS), channel)
    table = np.zeros((len(uniques), len(CHANNELS)), dtype=bool)
    for i, t in enumerate(uniques):
        for j, c in enumerate(CHANNELS):
            table[i, j] = bool(exclusions.get((t, c), False))
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


def first_reason(values: Iterable[Any]) -> list[str | None]:
    """The strongest reason of each scores row, or None."""
    return [(r[0] if r else None) for r in map(parse_reasons, values)]


def _bot_kinds(events: pd.DataFrame, reasons: Sequence[Any] | None) -> np.ndarray:
    """Kind of each bot event: the label's ``bot_kind``, else its top reason, else unknown."""
    n = len(events)
    kinds = np.full(n, UNKNOWN_KIND, dtype=object)
    if reasons is not None:
        top = np.array(first_reason(reasons), dtype=object)
        has = pd.notna(top)
        kinds[has] = np.char.add("reason:", top[has].astype(str)).astype(object)
    if "bot_kind" in events.columns:
        labelled = events["bot_kind"].to_numpy(dtype=object)
        has = pd.notna(labelled)
        kinds[has] = labelled[has]
    return kinds


def _group(frame: pd.DataFrame, keys: list[str], counts: Sequence[str]) -> pd.DataFrame:
    """Sum ``counts`` by ``keys`` (rows with a null key are not part of any group)."""
    if frame.empty:
        return frame.reindex(columns=[*keys, *counts])
    out = frame.groupby(keys, sort=True, dropna=True, observed=True)[list(counts)].sum()
    return out.reset_index()


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
    keep &= messages["channel"].isin(list(channels)).to_numpy()
    if tenants is not None:
        keep &= messages["tenant_id"].isin(list(tenants)).to_numpy()
    m = messages.loc[keep].reset_index(drop=True)
    sent = sent[keep]
    n = len(m)
    tenant = m["tenant_id"].to_numpy(dtype=object)
    channel = m["channel"].to_numpy(dtype=object)
    delivered_ns = _utc_ns(m["delivered_at"]) if n else np.zeros(0, np.int64)
    delivered = m["delivered_at"].notna().to_numpy()
    filter_on = _exclusion_lookup(tenant, channel, exclusions)
    send_day = sent // DAY_NS
    in_window = sent >= window.start.value

    # Events of delivered window messages, before as_of; everything else does not count.
    pos = _message_positions(m, events)
    occurred = _utc_ns(events["occurred_at"])
    ok = pos >= 0
    ok[ok] &= delivered[pos[ok]]
    ok &= occurred < window.end.value
    ev = events.loc[ok]
    pos = pos[ok]
    occurred = occurred[ok]

    score_pos = pd.Index(scores["event_id"].to_numpy(dtype=object)).get_indexer(
        ev["event_id"].to_numpy(dtype=object)
    )
    missing = score_pos < 0
    if missing.any():
        example = ev["event_id"].to_numpy(dtype=object)[missing][0]
        raise MissingScores(
            f"{int(missing.sum())} events have no score (e.g. event_id {example!r}); "
            "score them or pass a scores file covering them"
        )
    is_bot = scores["is_bot"].to_numpy(dtype=bool)[score_pos]
    etype = pd.Series(ev["type"].to_numpy(dtype=object))
    ev_filter = filter_on[pos]

    masks = {
        name: np.asarray(count_mask(c, etype, is_bot, ev_filter), dtype=bool)
        for name, c in COUNTS.items()
        if c.grain != "delivered"
    }

    def per_message(name: str, codes: np.ndarray, size: int) -> np.ndarray:
        c = COUNTS[name]
        counts = np.bincount(codes[masks[name]], minlength=size)
        return counts if c.grain == "events" else (counts > 0).astype(np.int64)

    base = {
        "tenant_id": tenant,
        "channel": channel,
        "send_day": send_day,
        "in_window": in_window,
        "bot_filter_applied": filter_on,
    }
    part_keys = ["tenant_id", "channel", "send_day", "in_window", "bot_filter_applied"]

    msg = dict(base)
    msg["delivered"] = delivered.astype(np.int64)
    for name in MESSAGE_COUNTS[1:]:
        msg[name] = per_message(name, pos, n)
    msg_frame = pd.DataFrame(msg)

    frames: dict[str, pd.DataFrame] = {}
    for table, module in MODULES.items():
        if module.grain == "message":  # grouped by a message column (campaign, automation)
            keyed = msg_frame.assign(**{k: m[k].to_numpy(dtype=object) for k in module.keys})
            frames[table] = _group(keyed, [*part_keys, *module.keys], MESSAGE_COUNTS)

    frames["segment_metrics"] = _segment_rows(m, msg_frame, segments, part_keys)
    frames["dashboard_daily"] = _day_rows(
        base, delivered, delivered_ns, pos, occurred, masks, part_keys
    )
    frames["bot_interactions"] = _event_rows(m, ev, scores, score_pos, base, pos, masks, part_keys)

    summary = _summary(msg_frame, pos, n)
    versions: tuple[str, ...] = ()
    if "model_version" in scores.columns and len(score_pos):
        versions = tuple(sorted(pd.unique(scores["model_version"].to_numpy()[score_pos])))
    return Partitions(
        window=window,
        frames={name: _finish(frame, MODULES[name]) for name, frame in frames.items()},
        summary=_finish_summary(
            summary, window, tenants or sorted(set(tenant)), channels, exclusions
        ),
        events_used=int(len(ev)),
        model_versions=versions,
        tenants=tuple(tenants) if tenants is not None else tuple(sorted(set(tenant))),
        channels=tuple(channels),
    )


def _segment_rows(
    m: pd.DataFrame, msg_frame: pd.DataFrame, segments: pd.DataFrame | None, part_keys: list[str]
) -> pd.DataFrame:
    """Per-message counts joined to every segment the recipient belongs to."""
    if segments is None or segments.empty or msg_frame.empty:
        return pd.DataFrame(columns=[*part_keys, "segment_id", *MESSAGE_COUNTS])
    members = segments[["tenant_id", "segment_id", "contact_id"]].drop_duplicates()
    frame = msg_frame.assign(contact_id=m["contact_id"].to_numpy(dtype=object))
    joined = frame.merge(members, on=["tenant_id", "contact_id"], how="inner")
    return _group(joined, [*part_keys, "segment_id"], MESSAGE_COUNTS)


def _day_rows(
    base: dict[str, np.ndarray],
    delivered: np.ndarray,
    delivered_ns: np.ndarray,
    pos: np.ndarray,
    occurred: np.ndarray,
    masks: dict[str, np.ndarray],
    part_keys: list[str],
) -> pd.DataFrame:
    """Dashboard rows: delivered by delivery date, events by event date (uniques per day)."""
    frames = []
    d = np.flatnonzero(delivered)
    rows = {k: v[d] for k, v in base.items()}
    rows["day"] = delivered_ns[d] // DAY_NS
    rows["delivered"] = np.ones(len(d), dtype=np.int64)
    frames.append(pd.DataFrame(rows))
    if len(pos):
        # A (message, event date) pair is one "message-day": uniques count these pairs.
        day = occurred // DAY_NS
        lo = int(day.min())
        span = int(day.max()) - lo + 1
        pair, inverse = np.unique(pos.astype(np.int64) * span + (day - lo), return_inverse=True)
        pair_msg = pair // span
        rows = {k: v[pair_msg] for k, v in base.items()}
        rows["day"] = pair % span + lo
        for name in MESSAGE_COUNTS[1:]:
            counts = np.bincount(inverse[masks[name]], minlength=len(pair))
            rows[name] = counts if COUNTS[name].grain == "events" else (counts > 0).astype(np.int64)
        frames.append(pd.DataFrame(rows))
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.reindex(columns=[*part_keys, "day", *MESSAGE_COUNTS]).fillna(0)
    for name in MESSAGE_COUNTS:
        frame[name] = frame[name].astype(np.int64)
    return _group(frame, [*part_keys, "day"], MESSAGE_COUNTS)


def _event_rows(
    m: pd.DataFrame,
    ev: pd.DataFrame,
    scores: pd.DataFrame,
    score_pos: np.ndarray,
    base: dict[str, np.ndarray],
    pos: np.ndarray,
    masks: dict[str, np.ndarray],
    part_keys: list[str],
) -> pd.DataFrame:
    """Bot events by recipient domain and bot kind."""
    module = MODULES["bot_interactions"]
    bot = np.flatnonzero(masks["bot_opens"] | masks["bot_clicks"])
    rows = {k: v[pos[bot]] for k, v in base.items()}
    domain = m["recipient_domain"].to_numpy(dtype=object)[pos[bot]]
    rows["recipient_domain"] = np.where(pd.isna(domain), NO_DOMAIN, domain)
    reasons = None
    if "reasons" in scores.columns:
        reasons = scores["reasons"].to_numpy(dtype=object)[score_pos[bot]]
    rows["bot_kind"] = _bot_kinds(ev.iloc[bot], reasons)
    for name in module.counts:
        rows[name] = masks[name][bot].astype(np.int64)
    return _group(pd.DataFrame(rows), [*part_keys, *module.keys], module.counts)


def _summary(msg_frame: pd.DataFrame, pos: np.ndarray, n: int) -> pd.DataFrame:
    """Messages, delivered and counted-or-excluded events per partition."""
    keys = ["tenant_id", "channel", "send_day", "bot_filter_applied"]
    frame = msg_frame[keys].assign(
        messages=1,
        delivered=msg_frame["delivered"],
        events=np.bincount(pos, minlength=n),
    )
    return _group(frame, keys, ("messages", "delivered", "events"))


def _days_to_dates(days: pd.Series) -> np.ndarray:
    """Day numbers since the epoch as ``datetime.date`` objects."""
    values = days.to_numpy(dtype=np.int64).astype("datetime64[D]")
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


def _finish_summary(
    summary: pd.DataFrame,
    window: Window,
    tenants: Sequence[str],
    channels: Sequence[str],
    exclusions: Mapping[tuple[str, str], bool],
) -> pd.DataFrame:
    """One row per (tenant, channel, send date) of the window, empty partitions included."""
    grid = pd.MultiIndex.from_product(
        [list(tenants), list(channels), window.send_dates()], names=list(PARTITION_KEY)
    ).to_frame(index=False)
    summary = summary.rename(columns={"send_day": "send_date"})
    summary["send_date"] = _days_to_dates(summary["send_date"]) if len(summary) else []
    out = grid.merge(
        summary.drop(columns="bot_filter_applied"), on=list(PARTITION_KEY), how="left"
    ).fillna(0)
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
