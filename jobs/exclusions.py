"""Tenant settings: "exclude bot interactions" per channel, their history and the recompute queue.

Every change is recorded with its time in ``settings_history`` and queues a 30-day recompute of
that tenant's channel (``recompute_queue``), which the worker (``botfilter run``) or the next
``botfilter recompute`` applies. Settings also come from a data directory's ``settings`` table:
a row newer than what the store holds wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import select

from contract.schema import CHANNELS
from core.errors import BotfilterError
from core.text import check_tenant_id
from jobs.store import Store, metric_partitions, settings_history, tenant_settings

SWITCH = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}


@dataclass(frozen=True)
class SettingChange:
    """One recorded change of one tenant's channel."""

    tenant_id: str
    channel: str
    enabled: bool
    previous: bool | None
    changed_at: datetime
    queue_id: int | None
    source: str


def parse_switch(value: str, option: str = "value") -> bool:
    """``on``/``off`` (also true/false, yes/no) as a bool."""
    try:
        return SWITCH[value.strip().lower()]
    except KeyError:
        raise BotfilterError(f"{option} must be on or off, not {value!r}") from None


def known_tenant(store: Store, tenant: str) -> bool:
    """Whether the store has seen ``tenant``: a setting, a recorded change or metrics."""
    with store.read() as conn:
        for table in (tenant_settings, settings_history, metric_partitions):
            query = select(table.c.tenant_id).where(table.c.tenant_id == tenant).limit(1)
            if conn.execute(query).first() is not None:
                return True
    return False


def _check(tenant: str, channel: str) -> None:
    check_tenant_id(tenant)
    if channel not in CHANNELS:
        raise BotfilterError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")


def set_exclusions(
    store: Store,
    tenant: str,
    changes: Mapping[str, bool],
    at: datetime | None = None,
    source: str = "api",
) -> list[SettingChange]:
    """Switch "exclude bots" on or off for some channels of a tenant, in one transaction.

    Each change is recorded with its time and queues the recompute of that tenant's channel
    for the last 30 days.
    """
    if not changes:
        raise BotfilterError("nothing to change: give --email and/or --sms")
    for channel in changes:
        _check(tenant, channel)
    stamp = pd.Timestamp(at or datetime.now(UTC))
    when = (
        stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    ).to_pydatetime()
    out = []
    with store.write() as conn:
        for channel, on in changes.items():
            previous = store.record_setting(conn, tenant, channel, bool(on), when, source)
            state = "on" if on else "off"
            queue_id = store.enqueue(conn, tenant, channel, f"exclude bots from {channel} {state}")
            out.append(SettingChange(tenant, channel, bool(on), previous, when, queue_id, source))
    return out


def set_exclusion(
    store: Store, tenant: str, channel: str, on: bool, at: datetime | None = None
) -> SettingChange:
    """Switch "exclude bots" for one channel of a tenant; queues its 30-day recompute."""
    return set_exclusions(store, tenant, {channel: on}, at)[0]


def sync_from_data(store: Store, frame: pd.DataFrame | None) -> list[SettingChange]:
    """Take a data directory's ``settings`` rows that are newer than the store's.

    A tenant the store does not know yet gets its settings; a known one only when the row's
    ``updated_at`` is later than the store's. Changed channels are queued for recompute.
    """
    if frame is None or frame.empty:
        return []
    out: list[SettingChange] = []
    with store.write() as conn:
        rows = frame.sort_values("updated_at", kind="stable")
        for row in rows.to_dict("records"):
            tenant = str(row["tenant_id"])
            at = pd.Timestamp(row["updated_at"]).tz_convert("UTC").to_pydatetime()
            # Read under the tenant's lock: a change made meanwhile (the console, another
            # sync) is seen, not overwritten by an older data row.
            stored = store.lock_setting(conn, tenant)
            known = stored is not None
            if stored is not None and pd.to_datetime(stored.updated_at, utc=True) >= at:
                continue
            for channel in CHANNELS:
                value = row[f"exclude_bots_{channel}"]
                if pd.isna(value):
                    continue
                before = bool(getattr(stored, f"exclude_bots_{channel}", False))
                if known and bool(value) == before:
                    continue
                previous = store.record_setting(conn, tenant, channel, bool(value), at, "data")
                queue_id = None
                if bool(value) != before:
                    state = "on" if value else "off"
                    reason = f"data settings: exclude bots from {channel} {state}"
                    queue_id = store.enqueue(conn, tenant, channel, reason)
                out.append(
                    SettingChange(tenant, channel, bool(value), previous, at, queue_id, "data")
                )
    return out


def tenant_setting(store: Store, tenant: str) -> dict[str, bool]:
    """A tenant's current switches (off when never set)."""
    with store.read() as conn:
        row = conn.execute(
            tenant_settings.select().where(tenant_settings.c.tenant_id == tenant)
        ).first()
    if row is None:
        return {c: False for c in CHANNELS}
    return {"email": bool(row.exclude_bots_email), "sms": bool(row.exclude_bots_sms)}
