"""What the console's API and pages read and change, as plain functions over the metrics store.

Every function takes the tenant it answers for; the web layer checks the caller's scope before
calling. Reads come from the store (settings, history, queue, job runs, metric partitions and
stored scores); nothing here recomputes metrics.
"""

from __future__ import annotations

import math
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from botfilter.errors import BotfilterError
from console.reasons import phrases
from contract.schema import CHANNELS
from jobs.metrics import MODULES, PRODUCT_TABLES, parse_reasons
from jobs.settings import set_exclusions, tenant_setting
from jobs.store import PARTITION_TABLES, Store, job_runs, metric_partitions, recompute_queue

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
    from jobs.store import settings_history, tenant_settings

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


def _side(frame: pd.DataFrame, filters: dict[str, bool] | None) -> dict[str, Any]:
    """Totals of partition rows: as stored (``filters`` None) or as a recompute with ``filters``
    would count them (the partitions keep both the all-events and the human-only counts)."""
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
    return sums


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
    with store.read() as conn:
        as_of = conn.execute(
            select(func.max(metric_partitions.c.as_of)).where(
                metric_partitions.c.tenant_id == tenant
            )
        ).scalar()
    if as_of is None:
        return None
    return (pd.Timestamp(as_of) - timedelta(days=window_days)).date()


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
        before, later = _side(sub, None), _side(sub, after)
        channels[channel] = {
            "before": before,
            "after": later,
            "opens_excluded": later["bot_opens_excluded"] - before["bot_opens_excluded"],
            "clicks_excluded": later["bot_clicks_excluded"] - before["bot_clicks_excluded"],
        }
    modules = {}
    for url, table in MODULE_URLS.items():
        frame = parts[table]
        modules[url] = {
            channel: {
                "before": _side(frame[frame["channel"] == channel], None),
                "after": _side(frame[frame["channel"] == channel], after),
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
        clean = {}
        for k, v in row.items():
            if isinstance(v, (pd.Timestamp, datetime)):
                clean[k] = v.isoformat(timespec="seconds")
            elif isinstance(v, date):
                clean[k] = v.isoformat()
            elif v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                clean[k] = None
            elif isinstance(v, np.generic):
                clean[k] = v.item()
            else:
                clean[k] = v
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


class DataSource:
    """The worker's data directory, loaded through the contract once per change of its files."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._data: Any = None
        self._ip: Any = None
        self._index: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self._bots: dict[tuple[str, str], tuple[int, pd.DataFrame]] = {}

    def load(self) -> Any:
        """The validated tables (reloaded when a file changed)."""
        from jobs.worker import data_fingerprint

        if self.data_dir is None:
            raise BotfilterError("the console was started without --data: no event details")
        with self._lock:
            fp = data_fingerprint(self.data_dir)
            if fp != self._fingerprint:
                import contract

                self._data = contract.load(self.data_dir)
                self._fingerprint = fp
                self._index = {}
            return self._data

    def events_of(self, tenant: str, module: str, key: str) -> pd.DataFrame:
        """The events of one campaign or automation (an index per tenant and module is built
        once per load, so a drill-down does not scan every event)."""
        data = self.load()
        with self._lock:
            index = self._index.get((tenant, module))
            if index is None:
                column = DRILL_KEYS[module]
                m = data.messages
                m = m.loc[(m["tenant_id"] == tenant) & m[column].notna(), ["message_id", column]]
                e = data.events
                mine = np.flatnonzero((e["tenant_id"] == tenant).to_numpy())
                keys = e["message_id"].iloc[mine].map(m.set_index("message_id")[column])
                found = keys.notna().to_numpy()
                groups = pd.Series(mine[found]).groupby(keys.to_numpy()[found]).indices
                index = {k: mine[found][v] for k, v in groups.items()}
                self._index[(tenant, module)] = index
        rows = index.get(key)
        return data.events.iloc[rows if rows is not None else []]

    def bot_scores(self, store: Store, tenant: str, version: str) -> pd.DataFrame:
        """The tenant's stored bot scores of ``version`` by event id, with reasons (reloaded
        when the store holds a different number of scores)."""
        count = store.score_versions([tenant]).get(version, 0)
        with self._lock:
            hit = self._bots.get((tenant, version))
            if hit is not None and hit[0] == count:
                return hit[1]
        scores = store.load_scores([tenant], version, reasons=True)
        bots = scores.loc[scores["is_bot"], ["event_id", "bot_score", "reasons"]]
        bots = bots.set_index("event_id")
        with self._lock:
            self._bots[(tenant, version)] = (count, bots)
        return bots

    def enrichers(self) -> tuple[Any, Any]:
        """The vendored IP and User-Agent enrichers (loaded once)."""
        with self._lock:
            if self._ip is None:
                from features.enrichment.ip import IpEnricher
                from features.enrichment.reference import load_reference

                ref = load_reference()
                self._ip = IpEnricher(ref)
            return self._ip, None


def _ua_family(ua: str) -> str:
    from ua_parser import parse

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


def bot_interactions(
    store: Store, source: DataSource, tenant: str, module: str, key: str
) -> pd.DataFrame:
    """Bot events of one campaign or automation, newest first: time, kind, score, reasons in
    words, network (ASN and /24) and user-agent family."""
    if module not in DRILL_KEYS:
        raise BotfilterError("bot interactions exist for campaigns and automations only")
    events = source.events_of(tenant, module, key)
    version = latest_model_version(store, tenant)
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in DRILL_COLUMNS})
    if version is None or events.empty:
        return empty
    joined = events.join(source.bot_scores(store, tenant, version), on="event_id", how="inner")
    if joined.empty:
        return empty
    network = _networks(source, joined)
    agents = joined["user_agent"] if "user_agent" in joined else pd.Series("", index=joined.index)
    out = pd.DataFrame(
        {
            "occurred_at": joined["occurred_at"].to_numpy(),
            "event_id": joined["event_id"].to_numpy(),
            "message_id": joined["message_id"].to_numpy(),
            "type": joined["type"].to_numpy(),
            "kind": joined["bot_kind"].fillna("").to_numpy() if "bot_kind" in joined else "",
            "bot_score": joined["bot_score"].round(4).to_numpy(),
            "reasons": [phrases(parse_reasons(r)) for r in joined["reasons"]],
            "network": network,
            "user_agent_family": agents.fillna("").map(_ua_family).to_numpy(),
        }
    )
    out = out.sort_values(["occurred_at", "event_id"], ascending=[False, True], ignore_index=True)
    # Seconds are what a person reads, in the API, the page and the CSV alike.
    out["occurred_at"] = pd.to_datetime(out["occurred_at"], utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    return out


def _networks(source: DataSource, events: pd.DataFrame) -> list[str]:
    """``AS<n> <prefix>`` per event (the prefix alone when no ASN is known; ``unknown``
    without an address)."""
    if "ip" not in events:
        return ["unknown"] * len(events)
    ips = events["ip"].fillna("").astype(str)
    ip_enricher, _ = source.enrichers()
    asn = events.get("asn")
    asns = np.asarray(ip_enricher.enrich(ips, asn)["asn"]).tolist()
    out = []
    for a, ip in zip(asns, ips, strict=True):
        prefix = _prefix(ip) if ip else "unknown"
        out.append(f"AS{int(a)} {prefix}" if a and a > 0 else prefix)
    return out


def _prefix(ip: str) -> str:
    """The /24 of an IPv4 address or /48 of an IPv6 one."""
    import ipaddress

    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def _iso(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat(timespec="seconds")


def check_module(module: str) -> str:
    """``module`` if it is one of the console's module names."""
    if module not in MODULE_URLS:
        raise BotfilterError(f"unknown module {module!r}: use one of {', '.join(MODULE_URLS)}")
    return module


__all__ = ["MODULES", "DataSource"]
