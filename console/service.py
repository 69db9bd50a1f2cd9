"""What the console's API and pages read and change, as plain functions over the metrics store.

Every function takes the tenant it answers for; the web layer checks the caller's scope before
calling. Reads come from the store (settings, history, queue, job runs, metric partitions, stored
scores and the window events the recompute stores); nothing here reads the data directory or
recomputes metrics.
"""

from __future__ import annotations

import math
import threading
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from ua_parser import parse

from console.reasons import phrases
from contract.schema import CHANNELS
from core.errors import BotfilterError
from jobs.exclusions import set_exclusions, tenant_setting
from jobs.metrics import MODULES, PRODUCT_TABLES, parse_reasons
from jobs.store import (
    PARTITION_TABLES,
    Store,
    job_runs,
    metric_partitions,
    recompute_queue,
    settings_history,
    tenant_settings,
)
from jobs.store.window_events import MATCHES

#: Module tables the console shows, by the name used in URLs.
MODULE_URLS: dict[str, str] = {
    "dashboard": "dashboard_daily",
    "campaigns": "campaign_metrics",
    "automations": "automation_metrics",
    "segments": "segment_metrics",
}
SIDES = ("opens_total", "opens_unique", "clicks_total", "clicks_unique")


def tenants(store: Store) -> list[str]:
    """Every tenant the store knows (settings, history or metrics), sorted."""
    seen: set[str] = set()
    with store.read() as conn:
        for table in (tenant_settings, settings_history, metric_partitions):
            seen.update(conn.execute(select(table.c.tenant_id).distinct()).scalars())
    return sorted(seen)


def channel_settings(store: Store, tenant: str) -> dict[str, bool]:
    """The tenant's "exclude bot interactions" switch per channel."""
    return tenant_setting(store, tenant)


def change_settings(
    store: Store, tenant: str, changes: dict[str, bool], who: str
) -> list[dict[str, Any]]:
    """Apply the changes that differ from the current switches (each queues a recompute)."""
    current = tenant_setting(store, tenant)
    for channel in changes:
        if channel not in CHANNELS:
            raise BotfilterError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")
    real = {c: bool(v) for c, v in changes.items() if current[c] != bool(v)}
    if not real:
        return []
    done = set_exclusions(store, tenant, real, source=who[:20])
    return [
        {"channel": c.channel, "enabled": c.enabled, "previous": c.previous, "queue_id": c.queue_id}
        for c in done
    ]


def history(store: Store, tenant: str) -> list[dict[str, Any]]:
    """Setting changes, newest first: who (the source), when, channel, from, to."""
    frame = store.settings_history(tenant)
    out = []
    for row in frame.iloc[::-1].itertuples(index=False):
        out.append(
            {
                "channel": row.channel,
                "from": None if pd.isna(row.previous) else bool(row.previous),
                "to": bool(row.enabled),
                "changed_at": _iso(row.changed_at),
                "who": row.source,
            }
        )
    return out


def status(store: Store, tenant: str, limit: int = 10) -> list[dict[str, Any]]:
    """The tenant's queued recomputes, newest first: queued -> running -> done, with times."""
    with store.read() as conn:
        queue = conn.execute(
            select(recompute_queue)
            .where(recompute_queue.c.tenant_id == tenant)
            .order_by(recompute_queue.c.id.desc())
            .limit(limit)
        ).all()
        runs = conn.execute(
            select(job_runs)
            .where(job_runs.c.tenant_id == tenant, job_runs.c.kind == "recompute")
            .order_by(job_runs.c.started_at.desc())
            .limit(50)
        ).all()
    by_id = {r.run_id: r for r in runs}
    out = []
    for q in queue:
        run = by_id.get(q.run_id) if q.run_id else None
        state, started = "queued", None
        if q.status == "done":
            state = "done"
            started = run.started_at if run is not None else None
        else:
            # A run of this tenant that started after the request and is still open applies it.
            live = [
                r
                for r in runs
                if r.status == "running"
                and r.started_at >= q.requested_at
                and q.channel in (r.channels or "")
            ]
            if live:
                state, started = "running", live[0].started_at
        out.append(
            {
                "id": q.id,
                "channel": q.channel,
                "reason": q.reason,
                "state": state,
                "queued_at": _iso(q.requested_at),
                "started_at": _iso(started),
                "done_at": _iso(q.done_at),
            }
        )
    return out


# --- impact preview -------------------------------------------------------------------------


def _side(frame: pd.DataFrame, filters: dict[str, bool] | None, channel: str) -> dict[str, Any]:
    """Totals of one channel's partition rows: as stored (``filters`` None) or as a recompute
    with ``filters`` would count them (the partitions keep both the all-events and the
    human-only counts). Opens and the open rate are empty (None) for SMS, as in PRODUCT.md."""
    sums: dict[str, Any]
    if frame.empty:
        sums = {c: 0 for c in ("delivered", *SIDES, "bot_opens_excluded", "bot_clicks_excluded")}
    elif filters is None:
        cols = ["delivered", *SIDES, "bot_opens_excluded", "bot_clicks_excluded"]
        sums = {c: int(frame[c].fillna(0).sum()) for c in cols}
    else:
        on = frame["channel"].map(filters).fillna(False).astype(bool).to_numpy()
        sums = {"delivered": int(frame["delivered"].fillna(0).sum())}
        for col in SIDES:
            picked = np.where(on, frame[f"{col}_human"].fillna(0), frame[f"{col}_all"].fillna(0))
            sums[col] = int(picked.sum())
        for kind in ("opens", "clicks"):
            gap = frame[f"{kind}_total_all"].fillna(0) - frame[f"{kind}_total_human"].fillna(0)
            sums[f"bot_{kind}_excluded"] = int(gap[on].sum())
    delivered = sums["delivered"]
    sums["open_rate"] = sums["opens_unique"] / delivered if delivered else None
    sums["ctr"] = sums["clicks_unique"] / delivered if delivered else None
    if channel == "sms":
        sums.update(dict.fromkeys(_OPEN_COLUMNS))
    return sums


_OPEN_COLUMNS = ("opens_total", "opens_unique", "bot_opens_excluded", "open_rate")


PREVIEW_COLUMNS = (
    "delivered",
    *SIDES,
    *(f"{c}_{side}" for c in SIDES for side in ("all", "human")),
    "bot_opens_excluded",
    "bot_clicks_excluded",
)


def _channel_sums(conn: Any, table: str, tenant: str, since: date) -> pd.DataFrame:
    """A module's stored partition counts summed per channel in SQL (the filter is per channel,
    so per-channel sums are all :func:`_side` needs: one row per channel, not per key and day)."""
    t = PARTITION_TABLES[table]
    stmt = (
        select(t.c.channel, *[func.sum(t.c[c]).label(c) for c in PREVIEW_COLUMNS])
        .where(t.c.tenant_id == tenant, t.c.send_date >= since)
        .group_by(t.c.channel)
    )
    frame = pd.DataFrame(conn.execute(stmt).all(), columns=["channel", *PREVIEW_COLUMNS])
    for col in PREVIEW_COLUMNS:
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    return frame


def window_start(store: Store, tenant: str, window_days: int) -> date | None:
    """First send date the next recompute rewrites: ``window_days`` before the tenant's latest
    stored as-of time (the worker recomputes every hour, so that is close to now)."""
    as_of = stored_as_of(store, tenant)
    return None if as_of is None else (as_of - timedelta(days=window_days)).date()


def stored_as_of(store: Store, tenant: str) -> pd.Timestamp | None:
    """The latest as-of time of the tenant's stored partitions."""
    with store.read() as conn:
        as_of = conn.execute(
            select(func.max(metric_partitions.c.as_of)).where(
                metric_partitions.c.tenant_id == tenant
            )
        ).scalar()
    return None if as_of is None else pd.Timestamp(as_of)


def preview(
    store: Store,
    tenant: str,
    changes: dict[str, bool],
    window_days: int = 30,
) -> dict[str, Any]:
    """What switching ``changes`` would do to the last ``window_days`` days, from the stored
    partitions (built from stored scores): opens and clicks excluded, open rate and CTR before ->
    after, per channel and per module. No recompute."""
    for channel in changes:
        if channel not in CHANNELS:
            raise BotfilterError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")
    current = tenant_setting(store, tenant)
    after = {**current, **{c: bool(v) for c, v in changes.items()}}
    since = window_start(store, tenant, window_days) or date.max
    with store.read() as conn:
        parts = {
            name: _channel_sums(conn, name, tenant, since)
            for name in ("channel_totals", *PRODUCT_TABLES)
        }
    channels = {}
    totals = parts["channel_totals"]
    for channel in CHANNELS:
        sub = totals[totals["channel"] == channel]
        before, later = _side(sub, None, channel), _side(sub, after, channel)
        channels[channel] = {
            "before": before,
            "after": later,
            "opens_excluded": None
            if channel == "sms"
            else later["bot_opens_excluded"] - before["bot_opens_excluded"],
            "clicks_excluded": later["bot_clicks_excluded"] - before["bot_clicks_excluded"],
        }
    modules = {}
    for url, table in MODULE_URLS.items():
        frame = parts[table]
        modules[url] = {
            channel: {
                "before": _side(frame[frame["channel"] == channel], None, channel),
                "after": _side(frame[frame["channel"] == channel], after, channel),
            }
            for channel in CHANNELS
        }
    return {
        "tenant_id": tenant,
        "since": None if since == date.max else since.isoformat(),
        "current": current,
        "after": after,
        "channels": channels,
        "modules": modules,
    }


# --- metrics --------------------------------------------------------------------------------


def metrics(store: Store, tenant: str, module: str) -> pd.DataFrame:
    """A module table with both sides (all events / humans only) and the bot share of opens
    and clicks."""
    if module not in MODULE_URLS:
        raise BotfilterError(f"unknown module {module!r}: use one of {', '.join(MODULE_URLS)}")
    frame = store.read_view(MODULE_URLS[module], tenant)
    if frame.empty:
        return frame
    all_events = frame["opens_total_all"].fillna(0) + frame["clicks_total_all"].fillna(0)
    human = frame["opens_total_human"].fillna(0) + frame["clicks_total_human"].fillna(0)
    frame["bot_share"] = np.where(
        all_events > 0, (all_events - human) / all_events.where(all_events > 0, 1), np.nan
    )
    return frame


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready rows (dates as ISO text, missing and NaN as null)."""
    out = []
    for row in frame.to_dict("records"):
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, (pd.Timestamp, datetime)):
                clean[str(k)] = v.isoformat(timespec="seconds")
            elif isinstance(v, date):
                clean[str(k)] = v.isoformat()
            elif v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                clean[str(k)] = None
            elif isinstance(v, np.generic):
                clean[str(k)] = v.item()
            else:
                clean[str(k)] = v
        out.append(clean)
    return out


# --- bot interactions -----------------------------------------------------------------------

DRILL_KEYS = {"campaigns": "campaign_id", "automations": "automation_id"}
DRILL_COLUMNS = (
    "occurred_at",
    "event_id",
    "message_id",
    "type",
    "kind",
    "bot_score",
    "reasons",
    "network",
    "user_agent_family",
)


class EventSource:
    """The window events the recompute stored (:mod:`jobs.store.window_events`): a campaign's
    or automation's for the drill-down, a tenant's for the list dry run (kept until the
    store's batches change)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def events_of(self, store: Store, tenant: str, module: str, key: str) -> pd.DataFrame:
        """The stored events of one campaign or automation (``module`` is also the stored
        batches' module name), with their model verdicts."""
        return store.window_events(tenant, module, key)

    def window(
        self, store: Store, tenant: str, since: date | None
    ) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        """What a dry run counts, as the metrics do: the stored events of delivered messages
        (only the columns entries match and the integer ``message_code`` of each message), their model
        verdicts, and delivered messages per channel since ``since``."""
        key = (*store.window_events_content(tenant), since)
        with self._lock:
            hit = self._window.get(tenant)
            if hit is not None and hit[0] == key:
                return hit[1]
        stored = store.window_events(tenant, columns=MATCHES)
        if "delivered" in stored.columns:
            stored = stored.loc[stored["delivered"].to_numpy(dtype=bool)].reset_index(drop=True)
        events = pd.DataFrame({"tenant_id": tenant}, index=stored.index)
        for col in (
            "message_code",
            "channel",
            "type",
            "ip",
            "asn",
            "user_agent",
            "recipient_domain",
        ):
            if col in stored.columns:
                events[col] = stored[col]
        # Categories: a dry run's matching and filtering then work on integer codes.
        for col in ("tenant_id", "type", "channel", "ip", "user_agent", "recipient_domain"):
            if col in events.columns:
                events[col] = events[col].astype("category")
        is_bot = stored["is_bot"].to_numpy(dtype=bool) if len(stored) else np.zeros(0, dtype=bool)
        found = (events, is_bot, delivered_since(store, tenant, since))
        with self._lock:
            self._window[tenant] = (key, found)
        return found


def delivered_since(store: Store, tenant: str, since: date | None) -> dict[str, int]:
    """Delivered messages per channel in the stored partitions of send dates from ``since``."""
    t = metric_partitions
    stmt = select(t.c.channel, func.sum(t.c.delivered)).where(t.c.tenant_id == tenant)
    if since is not None:
        stmt = stmt.where(t.c.send_date >= since)
    with store.read() as conn:
        return {str(c): int(n or 0) for c, n in conn.execute(stmt.group_by(t.c.channel))}


def _ua_family(ua: str) -> str:
    try:
        result = parse(ua or "")
    except Exception:  # a malformed string is shown as unknown, never an error page
        return "unknown"
    family = result.user_agent.family if result and result.user_agent else None
    return family or "unknown"


def latest_model_version(store: Store, tenant: str) -> str | None:
    """The model version of the tenant's most recently computed partitions."""
    with store.read() as conn:
        return conn.execute(
            select(metric_partitions.c.model_version)
            .where(metric_partitions.c.tenant_id == tenant)
            .order_by(metric_partitions.c.computed_at.desc())
            .limit(1)
        ).scalar()


def scores_model(store: Store, tenant: str) -> str | None:
    """The model whose stored scores describe the tenant: that of its latest partitions when
    scores of it are stored, else the model with the most stored scores."""
    stored = store.score_versions([tenant])
    latest = latest_model_version(store, tenant)
    if latest in stored or not stored:
        return latest if latest in stored else None
    return max(sorted(stored), key=lambda m: stored[m])


def list_dry_run(
    store: Store,
    source: EventSource,
    tenant: str,
    proposed: list[Any],
    window_days: int = 30,
) -> dict[str, Any]:
    """What replacing the tenant's in-force list entries by ``proposed`` would change over the
    recompute window, from the stored window events (see :mod:`jobs.lists.dryrun`)."""
    from jobs.lists.apply import default_asn_lookup
    from jobs.lists.dryrun import dry_run
    from jobs.lists.storage import entries

    now = pd.Timestamp.now(tz="UTC")
    current = [e for e in entries(store, [tenant]) if e.active(now)]
    since = window_start(store, tenant, window_days)
    model = scores_model(store, tenant)
    events, is_bot, delivered = source.window(store, tenant, since)
    lookup = default_asn_lookup() if any(e.kind == "asn" for e in [*current, *proposed]) else None
    result = dry_run(
        events, is_bot, delivered, current, proposed, tenant_setting(store, tenant), now, lookup
    )
    result.update(tenant_id=tenant, since=None if since is None else since.isoformat(), model=model)
    return result


def bot_interactions(
    store: Store, source: EventSource, tenant: str, module: str, key: str
) -> pd.DataFrame:
    """Bot events of one campaign or automation, newest first: time, kind, score, reasons in
    words, network (ASN and /24) and user-agent family."""
    if module not in DRILL_KEYS:
        raise BotfilterError("bot interactions exist for campaigns and automations only")
    events = source.events_of(store, tenant, module, key)
    if "delivered" in events.columns:  # only events of delivered messages count (PRODUCT.md)
        events = events.loc[events["delivered"].to_numpy(dtype=bool)]
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in DRILL_COLUMNS})
    if events.empty:
        return empty
    joined = _effective_bots(store, tenant, events)
    if joined.empty:
        return empty
    # Stored text columns come back as categories: plain objects before filling gaps.
    joined = joined.astype(
        {c: object for c in ("network", "user_agent", "bot_kind") if c in joined}
    )
    network = joined["network"].fillna("unknown").to_numpy() if "network" in joined else "unknown"
    agents = joined["user_agent"] if "user_agent" in joined else pd.Series("", index=joined.index)
    out = pd.DataFrame(
        {
            "occurred_at": joined["occurred_at"].to_numpy(),
            "event_id": joined["event_id"].to_numpy(),
            "message_id": joined["message_id"].to_numpy(),
            "type": joined["type"].to_numpy(dtype=object),
            "kind": joined["bot_kind"].fillna("").to_numpy() if "bot_kind" in joined else "",
            "bot_score": joined["bot_score"].round(4).to_numpy(),
            "reasons": _per_distinct(
                joined["reasons"].map(lambda r: tuple(parse_reasons(r))),
                lambda r: phrases(list(r)),
            ),
            "network": network,
            "user_agent_family": _per_distinct(agents.fillna("").astype(str), _ua_family),
        }
    )
    out = out.sort_values(["occurred_at", "event_id"], ascending=[False, True], ignore_index=True)
    # Seconds are what a person reads, in the API, the page and the CSV alike.
    out["occurred_at"] = pd.to_datetime(out["occurred_at"], utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    return out


def _effective_bots(store: Store, tenant: str, events: pd.DataFrame) -> pd.DataFrame:
    """``events`` (stored, with the model's verdicts) that count as bots, with ``bot_score``
    and ``reasons``: the tenant's in-force list entries applied, as the recompute applies
    them."""
    from jobs.lists.apply import default_asn_lookup
    from jobs.lists.rules import apply_to_scores, override_reasons
    from jobs.lists.storage import entries

    scored = events["bot_score"].notna().to_numpy()
    now = pd.Timestamp.now(tz="UTC")
    live = [e for e in entries(store, [tenant]) if e.active(now)]
    if not live:
        return events.loc[events["is_bot"].to_numpy(dtype=bool) & scored]
    lookup = default_asn_lookup() if any(e.kind == "asn" for e in live) else None
    forced = override_reasons(events, live, now, lookup)
    verdicts = pd.DataFrame(
        {
            "bot_score": events["bot_score"].to_numpy(),
            "is_bot": events["is_bot"].to_numpy(dtype=bool),
            "reasons": [
                r if isinstance(r, list | tuple | np.ndarray) else [] for r in events["reasons"]
            ],
        },
        index=events.index,
    )
    verdicts = apply_to_scores(verdicts, forced)
    keep = verdicts["is_bot"].to_numpy(dtype=bool) & scored
    rest = events.drop(columns=["bot_score", "reasons"]).loc[keep]
    return rest.join(verdicts.loc[keep, ["bot_score", "reasons"]])


def _per_distinct(values: pd.Series, convert: Any) -> np.ndarray:
    """``convert`` applied once per distinct value (hashable), spread back over the rows."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return np.asarray([convert(u) for u in uniques], dtype=object)[codes]


def _iso(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat(timespec="seconds")


def check_module(module: str) -> str:
    """``module`` if it is one of the console's module names."""
    if module not in MODULE_URLS:
        raise BotfilterError(f"unknown module {module!r}: use one of {', '.join(MODULE_URLS)}")
    return module


__all__ = ["MODULES", "EventSource"]
