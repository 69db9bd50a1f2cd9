"""The computing half of the metric spec: partitions from contract-clean frames with
pandas/numpy (:func:`compute_partitions`), their dtypes (:func:`coerce`) and tables from partition
rows (:func:`rollup`). Every definition it counts by comes from :mod:`jobs.metrics.spec`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from contract.schema import CHANNELS, EVENT_TYPES
from core.errors import BotfilterError
from jobs.metrics.spec import (
    COUNTS,
    DAY_NS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    MESSAGE_COUNTS,
    MODULES,
    NO_DOMAIN,
    PARTITION_KEY,
    PRODUCT_TABLES,
    RATES,
    SMS,
    UNKNOWN_KIND,
    Module,
    Window,
    count_mask,
)


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
    # each tenant's own model versions (a tenant without scored events has none)
    tenant_versions: dict[str, tuple[str, ...]] = field(default_factory=dict)

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
    """Events that need a score have none: ``missing`` of them, ``example`` one's event_id."""

    def __init__(self, missing: int, example: object, since: pd.Timestamp | None = None) -> None:
        # The store keeps the window's first send date whole, so a scores file must cover the
        # events of messages sent since that day's start, not only since as_of - 30 days.
        covering = f" (events of messages sent since {since:%Y-%m-%d} 00:00 UTC)" if since else ""
        super().__init__(
            f"{missing} events have no score (e.g. event_id {example!r}); "
            f"score them or pass a scores file covering them{covering}"
        )
        self.missing = missing
        self.example = example


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
    return key_positions(
        messages["tenant_id"].to_numpy(dtype=object),
        messages["message_id"].to_numpy(dtype=object),
        events["tenant_id"].to_numpy(dtype=object),
        events["message_id"].to_numpy(dtype=object),
    )


def key_positions(
    tenants: np.ndarray, ids: np.ndarray, wanted_tenants: np.ndarray, wanted_ids: np.ndarray
) -> np.ndarray:
    """Position of each (``wanted_tenants``, ``wanted_ids``) pair among (``tenants``, ``ids``),
    -1 if none. Ids nearly always are unique across tenants: one lookup by id and a check of
    the tenant do (a MultiIndex of a million pairs cost 4.6 s of a recompute); pairs are joined
    into one text key only when an id repeats."""
    index = pd.Index(ids)
    if not index.is_unique:  # the same id in two tenants: match on both
        index = pd.Index(pd.Series(tenants) + "\x1f" + pd.Series(ids))
        return index.get_indexer(
            pd.Index(pd.Series(wanted_tenants) + "\x1f" + pd.Series(wanted_ids))
        )
    pos = index.get_indexer(pd.Index(wanted_ids))
    ok = np.flatnonzero(pos >= 0)
    pos[ok[tenants[pos[ok]] != wanted_tenants[ok]]] = -1
    return pos


def parse_reasons(value: Any) -> list[str]:
    """Reasons as a list of names, from a list, an array, JSON text or text separated by ``;``
    (as ``botfilter score`` writes a CSV scores file), ``,`` or ``|``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                listed = json.loads(text)
            except json.JSONDecodeError:
                listed = None
            if not isinstance(listed, list):
                # e.g. numpy's "['a' 'b']", written by a frame's to_csv: say so, in one line
                raise BotfilterError(
                    f"reasons {text[:60]!r}: not a JSON list; give names separated by ';'"
                )
            return [str(v) for v in listed]
        parts = text.replace("|", ",").replace(";", ",").split(",")
        return [p.strip() for p in parts if p.strip()]
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
    if any(isinstance(v, (str, float)) for v in items):  # text, or a CSV's empty cells (NaN)
        return np.array([(r[0] if r else None) for r in map(parse_reasons, items)], dtype=object)
    return np.array([None if v is None or len(v) == 0 else str(v[0]) for v in items], object)


def first_reason(values: Iterable[Any]) -> list[str | None]:
    """The strongest reason of each scores row, or None."""
    return list(top_reasons(list(values) if not isinstance(values, pd.Series) else values))


def _bot_kinds(
    events: pd.DataFrame, top: np.ndarray | None, scored: np.ndarray | None = None
) -> np.ndarray:
    """Kind of each bot event: the scores' ``bot_kind`` (the model's), else the label's, else
    its top reason, else unknown."""
    n = len(events)
    kinds = np.full(n, UNKNOWN_KIND, dtype=object)
    labelled = np.zeros(n, dtype=bool)
    if "bot_kind" in events.columns:
        label = events["bot_kind"].to_numpy(dtype=object)
        labelled = pd.notna(label)
        kinds[labelled] = label[labelled]
    if scored is not None:  # scores from before the kind head have "" (or None) here
        model = pd.notna(scored) & (scored != "")
        kinds[model] = scored[model]
        labelled |= model
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
    grouped_rows = np.ones(len(codes[0]), dtype=bool)
    for c in codes:
        grouped_rows &= c >= 0
    # No copies when every row belongs to a group.
    valid: np.ndarray | slice = slice(None) if grouped_rows.all() else grouped_rows
    inverse: np.ndarray  # each row's group number, from whichever branch below
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


def event_positions(table: pd.DataFrame, wanted: pd.DataFrame, tenants: bool = True) -> np.ndarray:
    """For each row of ``wanted``, the position of its event in ``table`` (-1 when none).

    An event is (tenant_id, event_id). Ids are nearly always unique across tenants, so one
    lookup by id and a check of the tenant do (:func:`key_positions`); pairs are matched only
    when an id repeats. ``tenants=False`` matches
    by ``event_id`` alone (a table without ``tenant_id``).
    """
    ids = wanted["event_id"].to_numpy(dtype=object)
    if not tenants:
        index = pd.Index(table["event_id"].to_numpy(dtype=object))
        if not index.is_unique:
            raise BotfilterError(
                f"event_id {index[index.duplicated()][0]!r} is scored more than once and the "
                "scores have no tenant_id to tell its tenants apart"
            )
        return index.get_indexer(pd.Index(ids))
    return key_positions(
        table["tenant_id"].to_numpy(dtype=object),
        table["event_id"].to_numpy(dtype=object),
        wanted["tenant_id"].to_numpy(dtype=object),
        ids,
    )


def score_positions(scores: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """For each event, the row of its score in ``scores`` (-1 when none); with a ``tenant_id``
    column a score only counts for its own tenant's event."""
    return event_positions(scores, events, "tenant_id" in scores.columns)


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

    score_pos = score_positions(scores, ev)
    missing = score_pos < 0
    if missing.any():
        example = ev["event_id"].to_numpy(dtype=object)[missing][0]
        raise MissingScores(int(missing.sum()), example, window.stored_start)
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
    versions, by_tenant = _versions(scores, score_pos, _take(tenant_key, pos))
    scope = tuple(tenants) if tenants is not None else tuple(sorted(set(tenant)))
    return Partitions(
        window=window,
        frames={name: _finish(frame, MODULES[name]) for name, frame in frames.items()},
        summary=summary_grid(summary, window, scope, channels, exclusions),
        events_used=int(len(ev)),
        model_versions=versions,
        tenants=scope,
        channels=tuple(channels),
        tenant_versions=by_tenant,
    )


def _versions(
    scores: pd.DataFrame, score_pos: np.ndarray, tenant: Key
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The model versions of the scores counted: all of them, and each tenant's own (a
    tenant's partitions name only the models that scored its events)."""
    if "model_version" not in scores.columns or not len(score_pos):
        return (), {}
    codes, labels = pd.factorize(scores["model_version"].to_numpy(dtype=object)[score_pos])
    pairs = np.unique(tenant[0] * len(labels) + codes)
    by_tenant: dict[str, list[str]] = {}
    for pair in pairs.tolist():
        by_tenant.setdefault(tenant[1][pair // len(labels)], []).append(labels[pair % len(labels)])
    return tuple(sorted(labels)), {t: tuple(sorted(v)) for t, v in by_tenant.items()}


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
    rows: list[np.ndarray] = [d]
    days: list[np.ndarray] = [delivered_ns[d] // DAY_NS]
    values: dict[str, list[np.ndarray]] = {"delivered": [np.ones(len(d), dtype=np.int64)]}
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
    scored = None
    if "bot_kind" in scores.columns:
        scored = scores["bot_kind"].to_numpy(dtype=object)[score_pos[bot]]
    keys["bot_kind"] = _key(_bot_kinds(ev.iloc[bot], top, scored))
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
        summary["send_date"] = _days_to_dates(summary["send_date"])  # dates even when empty
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
            numbers = pd.to_numeric(out[col])
            out[col] = (
                numbers.astype("Int64") if COUNTS[col].email_only else numbers.astype(np.int64)
            )
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
