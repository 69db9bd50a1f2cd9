"""Storage of the tenants' "exclude bots" switches: the current value per tenant and channel
(``tenant_settings``) and every change (``settings_history``). The rules for changing them live in
:mod:`jobs.exclusions`."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.store.rows import now, select_frame, upsert
from jobs.store.schema import settings_history, tenant_settings

_CURRENT = select(tenant_settings).order_by(tenant_settings.c.tenant_id)


def current(conn: Connection) -> pd.DataFrame:
    """Current settings: tenant_id, exclude_bots_email, exclude_bots_sms, updated_at."""
    return select_frame(conn, _CURRENT, tenant_settings)


def switches(conn: Connection) -> dict[tuple[str, str], bool]:
    """``{(tenant_id, channel): exclude bots}`` for every tenant with a setting."""
    out: dict[tuple[str, str], bool] = {}
    for row in conn.execute(_CURRENT):
        out[(row.tenant_id, "email")] = bool(row.exclude_bots_email)
        out[(row.tenant_id, "sms")] = bool(row.exclude_bots_sms)
    return out


def record(
    conn: Connection, tenant: str, channel: str, enabled: bool, at: datetime, source: str
) -> bool | None:
    """Apply one channel's setting, append it to the history when it changes the value;
    returns the previous value (None: the tenant had no setting)."""
    row = conn.execute(select(tenant_settings).where(tenant_settings.c.tenant_id == tenant)).first()
    values = {"email": False, "sms": False}
    previous = None
    if row is not None:
        values = {"email": bool(row.exclude_bots_email), "sms": bool(row.exclude_bots_sms)}
        previous = values[channel]
    values[channel] = bool(enabled)
    upsert(
        conn,
        tenant_settings,
        {
            "tenant_id": tenant,
            "exclude_bots_email": values["email"],
            "exclude_bots_sms": values["sms"],
            "updated_at": at,
        },
        ["tenant_id"],
    )
    if bool(previous) == bool(enabled):
        # Nothing changed (off is every tenant's start): the history lists changes only, as the
        # console's page and the dashboard's "setting changed" markers read it.
        return previous
    conn.execute(
        settings_history.insert().values(
            tenant_id=tenant,
            channel=channel,
            enabled=bool(enabled),
            previous=previous,
            changed_at=at,
            recorded_at=now(),
            source=source,
        )
    )
    return previous


def history(conn: Connection, tenant: str | None = None) -> pd.DataFrame:
    """Every recorded setting change, oldest first."""
    stmt = select(settings_history).order_by(settings_history.c.id)
    if tenant is not None:
        stmt = stmt.where(settings_history.c.tenant_id == tenant)
    return select_frame(conn, stmt, settings_history)
